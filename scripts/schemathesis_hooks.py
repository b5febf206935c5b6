"""Hooks of scripts/schemathesis: requests to the two provider webhooks carry the
credentials their providers would, so the generated data reaches the handlers instead of
stopping at 401; and half of the single leads sent to be validated or queued carry a
phone number possible for its numbering plan, so their valid path is reached too.

- Google Ads (POST /api/v1/webhook/google-ads): a JSON object body gets the token's
  `google_key` (ST_GOOGLE_KEY), as the lead form sends it.
- The SMS provider (POST /api/v1/webhook/sms/inbound): a form body gets `To` set to the
  demo line's number (ST_LINE_NUMBER) when it has one, and the request is signed as the
  provider signs it: `X-Twilio-Signature`, base64 of HMAC-SHA1 keyed with SMS__AUTH_TOKEN
  over the called URL (SMS__WEBHOOK_BASE_URL and the path) followed by each form parameter's
  name and value, names sorted, each name's values sorted.

- Single leads (POST /api/v1/webhook/forms and …/forms/validate): where a JSON object body
  has a `phone_number`, every other one (by a checksum of the body, so a seed repeats its
  run) gets a real one instead. JSON Schema cannot say which numbers a numbering plan
  allows, so generated ones are nearly always refused.

Requests without an object body, or with one that is not a form, go out as generated.
"""

import base64
import hashlib
import hmac
import json
import os
import zlib
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import schemathesis
from requests.models import RequestEncodingMixin

GOOGLE_ADS = "/api/v1/webhook/google-ads"
SMS_INBOUND = "/api/v1/webhook/sms/inbound"
SINGLE_LEADS = ("/api/v1/webhook/forms", "/api/v1/webhook/forms/validate")


def _signature(auth_token: str, url: str, form: str) -> str:
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(form, keep_blank_values=True, errors="replace"):
        params.setdefault(name, []).append(value)
    signed = url + "".join(
        name + value for name in sorted(params) for value in sorted(params[name])
    )
    mac = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    path = case.operation.path
    if path in SINGLE_LEADS and isinstance(case.body, dict) and "phone_number" in case.body:
        checksum = zlib.crc32(json.dumps(case.body, sort_keys=True, default=str).encode())
        if checksum % 2 == 0:
            case.body["phone_number"] = f"+1818555{checksum % 10000:04d}"
    elif path == GOOGLE_ADS and isinstance(case.body, dict):
        case.body["google_key"] = os.environ["ST_GOOGLE_KEY"]
    elif path == SMS_INBOUND and isinstance(case.body, (Mapping, str)):
        body = case.body
        if isinstance(body, Mapping):
            body = dict(body)
            if "To" in body and os.environ.get("ST_LINE_NUMBER"):
                body["To"] = os.environ["ST_LINE_NUMBER"]
            # The form as the HTTP client would encode it, so that what is signed is what
            # is sent.
            body = RequestEncodingMixin._encode_params(body)
            if isinstance(body, bytes):
                body = body.decode("utf-8", errors="replace")
            case.body = body
        url = os.environ["SMS__WEBHOOK_BASE_URL"].rstrip("/") + path
        if case.query:
            url += "?" + urlencode(case.query, doseq=True)
        if case.headers is None:
            case.headers = {}
        case.headers["X-Twilio-Signature"] = _signature(
            os.environ["SMS__AUTH_TOKEN"], url, body
        )
