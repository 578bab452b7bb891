"""The parts of the cloudpanel-api gateway (Node, Express) that shape its answers, ported line by line for the
gateway stand-in: utils/responseUtils.js parseCliOutput/parseTableData, routes/user.js parseTableToJson,
services/cloudpanel.js parseErrorMessage, its Joi schemas (utils/validation.js), body-parser's JSON errors (V8's
messages), and JavaScript's trim, whitespace, `.` and `\\w`, which differ from Python's."""

from __future__ import annotations

import datetime
import json
import re

# JavaScript's WhiteSpace and LineTerminator (String.prototype.trim, \s)
JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029" \
           "\u202f\u205f\u3000\ufeff"
_S = "[" + re.escape(JS_SPACE) + "]"
_DOT = r"[^\n\r\u2028\u2029]"  # `.` without the s flag
_W = "[A-Za-z0-9_]"  # `\w` without the u flag


def js_trim(text):
    return text.strip(JS_SPACE)


def iso_now():
    """new Date().toISOString()"""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def iso_of(sqlite_time):
    """'YYYY-MM-DD HH:MM:SS' (UTC) as a JSON-serialised JavaScript Date."""
    return sqlite_time.replace(" ", "T") + ".000Z"


def _js_object(pairs):
    """A JavaScript object's key order: array-index keys first, ascending, then the others as inserted."""
    index = sorted((k for k in pairs if k.isdigit() and str(int(k)) == k and int(k) < 2 ** 32 - 1), key=int)
    return {**{k: pairs[k] for k in index}, **{k: v for k, v in pairs.items() if k not in index}}


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _json_parse(text):
    return json.loads(text, parse_constant=_reject_constant)


# -- utils/responseUtils.js ------------------------------------------------------------------------------------

def parse_cli_output(output):
    """ResponseUtils.parseCliOutput: a JSON object in the output, else a table's rows, else the `Key: value` lines
    (only those), else the one line, else the list of lines."""
    if not output or not isinstance(output, str):
        return None
    lines = [line for line in js_trim(output).split("\n") if js_trim(line) != ""]
    match = re.search(r"\{.*\}", output, re.DOTALL)
    if match:
        try:
            return _json_parse(match.group(0))
        except ValueError:
            pass
    if len(lines) > 2 and any("|" in line and "+" in line for line in lines):
        return parse_table_data(lines)
    pairs = {}
    for line in lines:
        m = re.fullmatch(rf"([^:]+):{_S}*({_DOT}+)", line)
        if m:
            pairs[js_trim(m.group(1))] = js_trim(m.group(2))
    if pairs:
        return _js_object(pairs)
    return lines[0] if len(lines) == 1 else lines


def parse_table_data(lines):
    """ResponseUtils.parseTableData"""
    data_lines, header_line = [], None
    for line in lines:
        if "|" in line and not line.startswith("+"):
            if header_line is None and "User Name" in line:
                header_line = line
            elif header_line is not None and "User Name" not in line:
                data_lines.append(line)
    if header_line is None or not data_lines:
        return lines
    headers = [re.sub(rf"{_S}+", "_", h.lower()) for h in (js_trim(h) for h in header_line.split("|")) if h != ""]
    result = []
    for data_line in data_lines:
        values = [v for v in (js_trim(v) for v in data_line.split("|")) if v != ""]
        if len(values) == len(headers):
            result.append(dict(zip(headers, values)))
    return result if result else lines


# -- routes/user.js ----------------------------------------------------------------------------------------------

class JsTypeError(Exception):
    """A TypeError the route's try/catch turns into its error answer (error.message as the details)."""


def _camel(header):
    key = js_trim(re.sub(rf"{_S}+", " ", re.sub(r"[^a-zA-Z0-9]", " ", header.lower())))
    return re.sub(rf"{_S}(.)", lambda m: m.group(1).upper(), key)


def parse_table_to_json(table):
    """parseTableToJson of GET /api/user/list, on what parseCliOutput made of `clpctl user:list`."""
    if not isinstance(table, list) or len(table) < 3:
        return []
    header_row, header_index = None, -1
    for index, row in enumerate(table):
        if not isinstance(row, str):
            raise JsTypeError("row.includes is not a function")
        if "User Name" in row and "|" in row and "+" not in row:
            header_row, header_index = row, index
            break
    if header_row is None:
        return []
    header_parts = [p for p in (js_trim(p) for p in header_row.split("|")) if len(p) > 0]
    data_rows = []
    for index, row in enumerate(table):
        if not isinstance(row, str):
            raise JsTypeError("row.includes is not a function")
        if "|" in row and "+" not in row and index != header_index and len(js_trim(row)) > 0:
            data_rows.append(row)
    result = []
    for row in data_rows:
        values = [p for p in (js_trim(p) for p in row.split("|")) if len(p) > 0]
        obj = {}
        for index, header in enumerate(header_parts):
            if index < len(values):
                obj[_camel(header)] = values[index]
        if obj:
            result.append(obj)
    return result


# -- services/cloudpanel.js --------------------------------------------------------------------------------------

def parse_error_message(output, default_error="Command failed"):
    """CloudPanelService.parseErrorMessage(stdout + stderr, error.message)"""
    if not output or not isinstance(output, str):
        return default_error
    if "This value already exists" in output or "already exists" in output:
        errors = []
        for line in output.split("\n"):
            m = re.search(rf"(?:Error:{_S}*)?({_W}+):{_S}*This value already exists", line)
            if m:
                errors.append(f"{m.group(1)}: This value already exists.")
            elif ": This value already exists" in line or ": already exists" in line:
                errors.append(js_trim(re.sub(rf"^(Error:{_S}*|Warning:{_S}*|Info:{_S}*)", "", line,
                                             flags=re.IGNORECASE)))
        if errors:
            return "\n".join(errors)
        fields = re.findall(rf"({_W}+):{_S}*This value already exists", output)
        if fields:
            return "\n".join(f"{field}: This value already exists." for field in fields)
        for field in ("domainName", "databaseName", "databaseUserName", "userName", "siteUser"):
            if field in output:
                return f"{field}: This value already exists."
        return "This value already exists."
    if "Invalid PHP version" in output:
        return "phpVersion: Invalid PHP version specified."
    if "Template not found" in output:
        return "vhostTemplate: Template not found."
    if "Domain not found" in output:
        return "domainName: Domain not found."
    if "Invalid database name" in output:
        return "databaseName: Invalid database name."
    if "Invalid username" in output:
        return "userName: Invalid username."
    if "error" in output.lower():
        m = re.search(rf"error[:{re.escape(JS_SPACE)}]+({_DOT}+?)[\n\r]", output, re.IGNORECASE)
        if m:
            return js_trim(m.group(1))
        for line in output.split("\n"):
            if "error" in line.lower() and js_trim(line):
                return js_trim(line)
    cleaned = re.sub(rf"{_S}+", " ", re.sub(r"[\r\n]+", " ", js_trim(output)))
    return cleaned or default_error


# -- utils/validation.js (Joi, abortEarly: the first error only) -------------------------------------------------

# name -> (required, minimum length or None)
SCHEMAS = {
    "addStaticSite": {"domainName": (True, None), "siteUser": (True, None), "siteUserPassword": (True, 6)},
    "installLetsEncryptCertificate": {"domainName": (True, None), "subjectAlternativeName": (False, None)},
}


def joi_error(schema, body):
    """Joi's message for the first problem of `body` under `schema` (schema keys in order, then unknown keys), or
    None."""
    if not isinstance(body, dict):
        return '"value" must be of type object'
    for name, (required, minimum) in SCHEMAS[schema].items():
        if name not in body:
            if required:
                return f'"{name}" is required'
            continue
        value = body[name]
        if not isinstance(value, str):
            return f'"{name}" must be a string'
        if value == "":
            return f'"{name}" is not allowed to be empty'
        if minimum is not None and len(value.encode("utf-16-le")) // 2 < minimum:
            return f'"{name}" length must be at least {minimum} characters long'
    for name in body:
        if name not in SCHEMAS[schema]:
            return f'"{name}" is not allowed'
    return None


# -- body-parser's express.json() (strict) with V8's JSON.parse messages ------------------------------------------

_JSON_SPACE = " \t\n\r"


def _unexpected_token(text, pos):
    """V8's "Unexpected token" message, with its context of the source (whole when short)."""
    token = text[pos]
    if len(text) < 21:
        shown = f'"{text}"'
    elif pos < 10:
        shown = f'"{text[:pos + 10]}"...'
    elif pos < len(text) - 10:
        shown = f'..."{text[pos - 10:pos + 10]}"...'
    else:
        shown = f'..."{text[pos - 10:]}"'
    return f"Unexpected token '{token}', {shown} is not valid JSON"


def _container_at(text, pos):
    """'{' or '[' : the innermost container open at `pos` (strings skipped)."""
    stack, in_string, escaped = [], False, False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else None


def json_body_error(text):
    """The message express.json() answers (400) for a body it cannot read, or None when it reads it. Strict: only
    an object or an array; the common V8 messages (not every corner of V8's parser)."""
    if text == "":
        return None
    first = text.lstrip(_JSON_SPACE)[:1]
    if first not in ("{", "["):
        if not first:
            return "Unexpected end of JSON input"
        return _unexpected_token(text, text.index(first))
    try:
        _json_parse(text)
        return None
    except ValueError as err:
        if not isinstance(err, json.JSONDecodeError):  # NaN / Infinity
            pos = next((i for i in range(len(text)) if text.startswith(("NaN", "Infinity", "-Infinity"), i)), 0)
            return _unexpected_token(text, pos + (1 if text[pos] == "-" else 0))
        msg, pos = err.msg, err.pos
    at_end = text[pos:].strip(_JSON_SPACE) == ""
    if msg.startswith("Unterminated string"):
        return f"Unterminated string in JSON at position {len(text)}"
    if at_end:
        return "Unexpected end of JSON input"
    ch = text[pos]
    if msg.startswith("Invalid control character"):
        return f"Bad control character in string literal in JSON at position {pos}"
    if msg.startswith("Invalid \\uXXXX"):
        return f"Bad Unicode escape in JSON at position {pos}"
    if msg.startswith("Invalid \\escape"):
        return f"Bad escaped character in JSON at position {pos}"
    if msg == "Extra data":
        return f"Unexpected non-whitespace character after JSON at position {pos}"
    if msg == "Expecting value" and ch == "-":
        return f"No number after minus sign in JSON at position {pos + 1}"
    if msg == "Expecting property name enclosed in double quotes":
        before = text[:pos].rstrip(_JSON_SPACE)
        if before.endswith(","):
            return f"Expected double-quoted property name in JSON at position {pos}"
        return f"Expected property name or '}}' in JSON at position {pos}"
    if msg == "Expecting ':' delimiter":
        return f"Expected ':' after property name in JSON at position {pos}"
    if msg == "Expecting ',' delimiter":
        if _container_at(text, pos) == "[":
            return f"Expected ',' or ']' after array element in JSON at position {pos}"
        return f"Expected ',' or '}}' after property value in JSON at position {pos}"
    return _unexpected_token(text, pos)
