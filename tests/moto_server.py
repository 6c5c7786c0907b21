"""moto_server with one fix, for the tests and benchmarks: SQS deletes take the queue's lock.

moto's Queue.delete_message (moto 5.2.6, moto/sqs/models.py) walks the queue's message list and
then assigns a rebuilt list, without the lock add_message appends under. moto serves each request
on its own thread, and the GIL may switch threads at any call inside that walk, so with two deletes
overlapping (several readers each deleting a batch) and a send landing between them, the delete
that finishes last writes back a list built before the send: the message moto has just
acknowledged vanishes (and the other delete's message comes back). `qp enqueue`'s 10,000-key test
read 1-2 keys fewer than qp had sent in about 3 of 8 runs under load for that reason.

Run as moto_server is (`python tests/moto_server.py -H 127.0.0.1 -p PORT`).
"""

import sys

import moto.sqs.models as sqs_models
from moto.server import main

_delete_message = sqs_models.Queue.delete_message


def _locked_delete_message(self, receipt_handle):
    # The lock add_message holds (a Condition over an RLock), so a delete's walk-and-assign and
    # every append or other delete happen one after another.
    with self._messages_lock:
        return _delete_message(self, receipt_handle)


sqs_models.Queue.delete_message = _locked_delete_message

if __name__ == "__main__":
    sys.exit(main())
