"""Logging through the real handlers: the line format, the site prefix, and secrets masked everywhere."""

import io
import logging
import logging.handlers
import os
import secrets
import threading

from hosting_automator.core.logging_setup import LOG_FILE_BACKUPS, LOG_FILE_MAX_BYTES, configure_logging, site_context
from hosting_automator.masking import GENERATED_KEPT, MASK, SecretValues, secret_values

LINE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} "


def configured(tmp_path, level=logging.INFO):
    console = io.StringIO()
    log_file = tmp_path / "run.log"
    recent = configure_logging(str(log_file), level, console_stream=console)
    return console, log_file, recent


def test_lines_carry_time_level_and_the_site_inside_its_work(tmp_path):
    console, log_file, _ = configured(tmp_path)
    logger = logging.getLogger("hosting_automator.test")
    logger.info("run begins")
    with site_context("example.com"):
        logger.warning("inside")
    lines = log_file.read_text().splitlines()
    assert lines[0].split(" ", 2)[2] == "INFO run begins"
    assert lines[1].split(" ", 2)[2] == "WARNING [example.com] inside"
    assert console.getvalue().splitlines() == lines


def test_site_prefix_belongs_to_its_own_thread(tmp_path):
    _, log_file, _ = configured(tmp_path)
    logger = logging.getLogger("hosting_automator.test")
    barrier = threading.Barrier(2)

    def work(domain):
        with site_context(domain):
            barrier.wait()
            logger.info("step of %s", domain)
            barrier.wait()

    threads = [threading.Thread(target=work, args=(d,)) for d in ("a.example", "b.example")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [line.split(" ", 3)[3] for line in log_file.read_text().splitlines()]
    assert sorted(lines) == ["[a.example] step of a.example", "[b.example] step of b.example"]


def test_every_secret_is_masked_in_console_file_and_recent_lines(tmp_path):
    console, log_file, recent = configured(tmp_path)
    for secret in ("sb_secret_KEY123456", "matomo-TOKEN-987", "pass word/+&="):
        secret_values.add(secret)
    logger = logging.getLogger("hosting_automator.test")
    logger.error("key %s token %s", "sb_secret_KEY123456", "matomo-TOKEN-987")
    logger.error("in a URL: token_auth=pass+word%2F%2B%26%3D and raw pass word/+&=")
    try:
        raise RuntimeError("failed with sb_secret_KEY123456")
    except RuntimeError:
        logger.exception("traceback follows")
    for text in (console.getvalue(), log_file.read_text(), "\n".join(recent.lines)):
        assert "sb_secret_KEY123456" not in text
        assert "matomo-TOKEN-987" not in text
        assert "pass word/+&=" not in text and "pass+word%2F%2B%26%3D" not in text
        assert text.count("***") >= 5
    assert "RuntimeError: failed with ***" in log_file.read_text()


def test_library_warnings_go_through_the_masking_handlers(tmp_path):
    console, log_file, _ = configured(tmp_path)
    secret_values.add("library-secret-1")
    logging.getLogger("a_library.module").warning("could not parse a line holding library-secret-1")
    assert "WARNING could not parse a line holding ***" in log_file.read_text()


def test_quiet_console_still_gets_errors_and_the_file_gets_info(tmp_path):
    console, log_file, _ = configured(tmp_path, level=logging.ERROR)
    logger = logging.getLogger("hosting_automator.test")
    logger.info("all is well")
    logger.error("trouble")
    assert "all is well" not in console.getvalue()
    assert "ERROR trouble" in console.getvalue()
    assert "INFO all is well" in log_file.read_text()


def test_log_file_is_bounded(tmp_path):
    configured(tmp_path)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    assert handler.maxBytes == LOG_FILE_MAX_BYTES == 5 * 1024 * 1024
    assert handler.backupCount == LOG_FILE_BACKUPS
    handler.maxBytes = 2000
    logger = logging.getLogger("hosting_automator.test")
    for index in range(200):
        logger.info("line %03d %s", index, "x" * 40)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["run.log"] + [f"run.log.{n}" for n in range(1, LOG_FILE_BACKUPS + 1)]
    assert all(p.stat().st_size < 2000 for p in tmp_path.iterdir())  # rotated before a line would reach the bound
    assert all(p.stat().st_size > 2000 - 100 for p in tmp_path.iterdir() if p.name != "run.log")  # and not sooner


def test_log_file_size_counts_what_it_held_already(tmp_path):
    (tmp_path / "run.log").write_text("x" * 1989 + "\n")
    configured(tmp_path)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    handler.maxBytes = 2000

    logging.getLogger("hosting_automator.test").info("one more line")  # 1990 bytes already: this would pass 2000
    assert (tmp_path / "run.log.1").read_text() == "x" * 1989 + "\n"
    assert (tmp_path / "run.log").read_text().endswith(" INFO one more line\n")


def test_a_log_file_that_is_not_a_regular_file_is_written_and_never_rotated(capsys):
    recent = configure_logging("/dev/null", console_stream=io.StringIO())
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    handler.maxBytes = 100
    assert not handler.shouldRollover(logging.makeLogRecord({"msg": "x" * 200}))  # asked before any line is written
    logger = logging.getLogger("hosting_automator.test")
    for index in range(20):
        logger.info("line %02d %s", index, "x" * 40)
    assert len(recent.lines) == 20
    assert "Logging error" not in capsys.readouterr().err  # what a failed rollover would print
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")  # still the device, never renamed
    assert not os.path.exists("/dev/null.1")


def test_a_log_file_that_cannot_be_written_is_one_message_and_the_console_goes_on(capsys):
    console = io.StringIO()
    configure_logging("/dev/full", console_stream=console)  # every write there fails: No space left on device
    logger = logging.getLogger("hosting_automator.test")
    for index in range(30):
        logger.info("line %02d", index)
    notice = ("hosting-automator: LOG_FILE /dev/full cannot be written (No space left on device); log lines go to "
              "the console only from now on\n")
    shown = console.getvalue()
    assert shown.count("hosting-automator: LOG_FILE") == 1 and notice in shown
    assert [line[20:] for line in shown.splitlines() if "INFO" in line] == [f"INFO line {n:02d}" for n in range(30)]
    assert "Logging error" not in capsys.readouterr().err
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    handler.flush()  # what logging does at exit: the given-up file is neither written nor reopened
    handler.close()
    assert "Logging error" not in capsys.readouterr().err


def test_secret_values_mask_hides_any_eight_characters_in_a_row_of_a_secret():
    values = SecretValues()
    token = "7f3c9a1be24d4c6f8a0b1c2d3e4f5a6b"
    values.add(token)

    assert values.mask(f"token_auth={token}&x=1") == "token_auth=***&x=1"
    assert values.mask(f"token_auth={token[:31]}…") == "token_auth=***…"  # echoed cut short by a service
    assert values.mask(f"…{token[20:]} and {token[3:11]}") == "…*** and ***"
    assert values.mask(f"only {token[:7]} shows") == f"only {token[:7]} shows"  # seven are not the secret
    assert values.mask("nothing secret here") == "nothing secret here"


def test_secret_values_excerpt_masks_before_it_cuts():
    values = SecretValues()
    key = "sb_secret_Zq8LmN3pR7tV1xY5bC9dF2hJ"
    values.add(key)
    text = "E" * 100 + key + " tail" * 50

    shown = values.excerpt(text, 120)

    assert shown == "E" * 100 + "*** tail tail tail …"
    assert len(shown) <= 120
    assert not any(key[start:start + 8] in shown for start in range(len(key) - 7))


def test_secret_values_generated_passwords_stay_masked_for_the_run_the_latest_thousand_of_a_longer_one():
    values = SecretValues()
    key = "sb_secret_Zq8LmN3pR7tV1xY5bC9dF2hJ"
    values.add(key)
    passwords = [secrets.token_hex(16) for _ in range(GENERATED_KEPT + 5)]

    values.add_generated(passwords[0])
    assert values.mask(f"echoed later {passwords[0][3:15]}") == "echoed later ***"
    for password in passwords[1:]:
        values.add_generated(password)

    assert values.mask(passwords[-1]) == MASK and values.mask(passwords[5]) == MASK
    assert values.mask(passwords[4]) == passwords[4]  # the oldest beyond the bound are let go
    assert values.mask(f"later {key}") == "later ***"
    assert len(values._pieces) <= (GENERATED_KEPT + 1) * len(passwords[0])


def test_the_log_file_and_each_new_one_after_a_rotation_are_readable_by_their_owner_only(tmp_path):
    """It names domains and site users."""
    log_file = tmp_path / "run.log"
    configure_logging(str(log_file), console_stream=io.StringIO())
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler))
    logging.getLogger("hosting_automator.test").info("first line")
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"

    handler.doRollover()

    assert oct(log_file.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "run.log.1").stat().st_mode & 0o777) == "0o600"
