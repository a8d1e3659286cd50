"""requests-oauthlib's BackendApplicationClient and OAuth2Session as a service
client of tokenkeeper's /oauth2/token.

Run by TestPythonOAuthLibraries (cmd/tokenkeeper/python_test.go):

    python3 requests_oauthlib_client.py TOKEN_URL CLIENT_ID SECRET_FILE CREDENTIAL RESOURCE_URL SECONDS

It calls RESOURCE_URL for SECONDS seconds and prints its counts as JSON. The
lines between the README markers are the README's Python example, verbatim.
"""
import json
import sys
import time

token_url, client_id, secret_file, credential, resource_url, seconds = sys.argv[1:7]
with open(secret_file) as f:
    client_secret = f.read().strip()
broker_token_url = token_url
api_url = resource_url

# README: requests-oauthlib begin
from oauthlib.oauth2 import BackendApplicationClient, TokenExpiredError
from requests_oauthlib import OAuth2Session

session = OAuth2Session(client=BackendApplicationClient(client_id, scope=["credential:" + credential]))


def fetch_token():
    session.fetch_token(broker_token_url, client_id=client_id, client_secret=client_secret)


def get(url, **kwargs):
    # requests-oauthlib refreshes only with a refresh token; the client
    # credentials grant has none, so an expired token is fetched again.
    try:
        return session.get(url, **kwargs)
    except TokenExpiredError:
        fetch_token()
        return session.get(url, **kwargs)


fetch_token()
resp = get(api_url)
# README: requests-oauthlib end

counts = {"library": "requests-oauthlib", "requests": 0, "ok": 0, "failures": 0, "statuses": {}}
tokens = set()
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    counts["requests"] += 1
    try:
        resp = get(api_url, timeout=10)
        status = str(resp.status_code)
    except Exception as e:  # a failure to count, whatever it is
        status = type(e).__name__
    counts["statuses"][status] = counts["statuses"].get(status, 0) + 1
    if status == "200":
        counts["ok"] += 1
    else:
        counts["failures"] += 1
    tokens.add(session.token["access_token"])
    time.sleep(0.02)
counts["tokens"] = len(tokens)
print(json.dumps(counts))
