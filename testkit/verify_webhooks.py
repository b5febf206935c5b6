"""Verifies webhook deliveries with the Standard Webhooks authors' library.

Reads {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]} on stdin and
prints, for each delivery, {"payload": <the verified payload>} or {"error": "<why not>"}.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
wh = Webhook(request["secret"])
results = []
for d in request["deliveries"]:
    try:
        results.append({"payload": wh.verify(d["body"], d["headers"])})
    except Exception as e:  # the library's verification errors
        results.append({"error": f"{type(e).__name__}: {e}"})
json.dump(results, sys.stdout)
