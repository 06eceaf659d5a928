#!/usr/bin/env python3
"""A custom messenger on the veil daemon's gRPC API, in Python.

Drives two running daemons (Alice's and Bob's, by their API sockets): Bob
shares his contact link, Alice adds it, Bob accepts her request when it
arrives, Alice sends a message and Bob reads it from his event stream, then
answers. Prints one line per step and exits 0 once Alice has read Bob's
answer; any failure (or no progress within the timeout) exits non-zero.

    pip install grpcio grpcio-tools
    python3 two_friends.py ALICE_HOME/veil.sock BOB_HOME/veil.sock

The stubs are generated at start from the repository's
proto/schemas/veil/v1/daemon.proto (or the directory in VEIL_PROTO_DIR).
"""

import importlib
import os
import queue
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

TIMEOUT = 60  # seconds for each step


def stubs():
    """Compiles daemon.proto into a temporary package and imports it."""
    here = os.path.dirname(os.path.abspath(__file__))
    schemas = os.environ.get("VEIL_PROTO_DIR", os.path.join(here, "..", "..", "proto", "schemas"))
    out = tempfile.mkdtemp(prefix="veil-stubs-")
    args = ["protoc", f"-I{schemas}", f"-I{os.path.dirname(protoc.__file__)}/_proto",
            f"--python_out={out}", f"--grpc_python_out={out}", "veil/v1/daemon.proto"]
    if protoc.main(args) != 0:
        sys.exit("cannot compile daemon.proto")
    sys.path.insert(0, out)
    return importlib.import_module("veil.v1.daemon_pb2"), importlib.import_module("veil.v1.daemon_pb2_grpc")


pb, rpc = stubs()


class Node:
    """One daemon: its API, and its events as they come."""

    def __init__(self, name, socket):
        self.name = name
        # gRPC's default authority for a Unix socket is its percent-encoded
        # path, which the daemon's HTTP/2 server refuses: name a plain one.
        channel = grpc.insecure_channel(f"unix://{os.path.abspath(socket)}",
                                        options=[("grpc.default_authority", "localhost")])
        self.api = rpc.DaemonStub(channel)
        self.events = queue.Queue(maxsize=1024)
        self.ready = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()
        if not self.ready.wait(TIMEOUT):
            sys.exit(f"{name}: no event stream")

    def _listen(self):
        stream = self.api.Subscribe(pb.SubscribeRequest())
        self.ready.set()
        for event in stream:
            self.events.put(event)

    def wait_for(self, kind, check=lambda e: True):
        """The next event of `kind` that passes `check`."""
        while True:
            try:
                event = self.events.get(timeout=TIMEOUT)
            except queue.Empty:
                sys.exit(f"{self.name}: no {kind} event within {TIMEOUT} s")
            if event.WhichOneof("kind") == kind and check(getattr(event, kind)):
                return getattr(event, kind)

    def text(self, conversation, hash):
        history = self.api.History(pb.HistoryRequest(conversation=conversation, limit=100))
        return next(m.body.decode() for m in history.messages if m.hash == hash)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    alice, bob = Node("Alice", sys.argv[1]), Node("Bob", sys.argv[2])

    link = bob.api.GetLink(pb.GetLinkRequest()).uri
    print("Bob's link:", link[:40] + "…")
    alice.api.AddContact(pb.AddContactRequest(link=link, display_name="Alice"))
    request = bob.wait_for("contact_request")
    print("Bob got a request from", request.display_name or request.account[:8])
    contact = bob.api.DecideContact(pb.DecideContactRequest(contact=request.account, decision=pb.DECISION_ACCEPT))
    print("Bob accepted; their conversation is", contact.conversation[:8])
    alice.wait_for("contact_accepted")

    sent = alice.api.Send(pb.SendRequest(conversation=contact.conversation, body="hello from Python".encode()))
    got = bob.wait_for("message_received", lambda m: m.hash == sent.message.hash)
    print("Bob read:", bob.text(got.conversation, got.hash))
    answer = bob.api.Send(pb.SendRequest(conversation=contact.conversation, body="hello back".encode()))
    got = alice.wait_for("message_received", lambda m: m.hash == answer.message.hash)
    print("Alice read:", alice.text(got.conversation, got.hash))


if __name__ == "__main__":
    main()
