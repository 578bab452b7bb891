"""Runs the real command (`python -m hosting_automator.main`) as a subprocess against the stand-ins."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETTINGS = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY", "MATOMO_API_URL", "MATOMO_API_TOKEN", "CLOUDPANEL_API_URL",
            "CLOUDPANEL_API_TOKEN", "CLOUDPANEL_CLPCTL", "CLOUDPANEL_DB_PATH", "SITES_TABLE", "LOG_FILE",
            "LOCK_FILE", "HTTP_TIMEOUT", "MATOMO_SITE_TIMEZONE", "MATOMO_SITE_CURRENCY", "HEALTHCHECK_URL",
            "CLOUDPANEL_HTTPS_ADDRESS", "MAX_SITES_PER_RUN", "WORKERS", "CLOUDPANEL_CONCURRENCY")


@dataclass
class JobResult:
    returncode: int
    stdout: str
    stderr: str
    log: str


def job_environment(standins, overrides=None):
    """The machine's environment without any of our settings, then the stand-ins' settings, then `overrides`
    (a value of None removes the setting)."""
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    environ.update(standins.env)
    environ["MAX_SITES_PER_RUN"] = "0"
    environ["PYTHONPATH"] = str(REPO)
    for key, value in (overrides or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = str(value)
    return environ


def start_job(standins, *arguments, overrides=None, fast_retries=False, **popen):
    """fast_retries: run through tests/fast_retries.py, which cuts every retry wait 100-fold."""
    module = "tests.fast_retries" if fast_retries else "hosting_automator.main"
    return subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=standins.dir,
                            env=job_environment(standins, overrides), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def run_job(standins, *arguments, overrides=None, timeout=120, fast_retries=False):
    process = start_job(standins, *arguments, overrides=overrides, fast_retries=fast_retries)
    stdout, stderr = process.communicate(timeout=timeout)
    return JobResult(process.returncode, stdout, stderr, read_log(standins))


def read_log(standins):
    path = Path(standins.env["LOG_FILE"])
    return path.read_text() if path.exists() else ""
