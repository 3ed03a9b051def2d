"""A tiny stand-in for Stripe's API, for .ci/smoke only: `POST /v1/checkout/sessions` answers a
new open Checkout Session (the test fixture re-shaped, as tests/api/helpers.rs does); anything
else is a 404. Listens on 127.0.0.1 on a free port and writes that port to the file named by
its one argument.

usage: python3 fake_stripe.py PORT_FILE
"""

import http.server
import itertools
import json
import pathlib
import sys

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/api_checkout_session_retrieved_expanded.json"
counter = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.split("?")[0] != "/v1/checkout/sessions":
            self.send_error(404)
            return
        session_id = f"cs_test_smoke_{next(counter):04}"
        session = json.loads(FIXTURE.read_text())
        session.update(id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}",
                       status="open", payment_status="unpaid")
        body = json.dumps(session).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("fake stripe:", fmt % args, file=sys.stderr)


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
pathlib.Path(sys.argv[1]).write_text(str(server.server_address[1]))
server.serve_forever()
