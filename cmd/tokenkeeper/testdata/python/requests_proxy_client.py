"""Plain requests through tokenkeeper's proxy: no OAuth library at all.

Run by TestPythonOAuthLibraries (cmd/tokenkeeper/python_test.go):

    python3 requests_proxy_client.py PROXY_URL API_KEY_FILE SECONDS

It calls PROXY_URL (the broker's /v1/proxy/CREDENTIAL/PATH) for SECONDS
seconds and prints its counts as JSON. The lines between the README markers
are the README's Python example, verbatim.
"""
import json
import sys
import time

proxy_url, key_file, seconds = sys.argv[1:4]
with open(key_file) as f:
    api_key = f.read().strip()

# README: proxy begin
import requests

session = requests.Session()
session.headers["Authorization"] = "Bearer " + api_key  # the broker's key: never sent on to the API
resp = session.get(proxy_url)  # e.g. "http://127.0.0.1:8080/v1/proxy/github/user/repos"
# README: proxy end

counts = {"library": "requests (proxy)", "requests": 0, "ok": 0, "failures": 0, "statuses": {}, "replayed": 0}
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    counts["requests"] += 1
    try:
        resp = session.get(proxy_url, timeout=10)
        status = str(resp.status_code)
        if resp.headers.get("Tokenkeeper-Proxy-Replay") == "replayed":
            counts["replayed"] += 1
        if status == "200" and not resp.json().get("ok"):
            status = "not-ok"
    except Exception as e:  # a failure to count, whatever it is
        status = type(e).__name__
    counts["statuses"][status] = counts["statuses"].get(status, 0) + 1
    if status == "200":
        counts["ok"] += 1
    else:
        counts["failures"] += 1
    time.sleep(0.02)
print(json.dumps(counts))
