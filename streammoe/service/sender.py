"""Produce records from a child process, so Kafka's client-side work runs on another core.

Why: kafka-python does per-record work in Python (building batches, checksums) that holds
the GIL; in the daemon's process it competes with decoding and the model.  A child process
owns the :class:`KafkaProducer`; the daemon ships records to it in batches over a pipe (a
pickled list of byte strings, far cheaper than ``send`` itself) and blocks only when the
pipe is full - back-pressure, not unbounded memory.

The child is a plain ``python -m streammoe.service.sender`` subprocess talking over a
socket pair (not ``multiprocessing``, whose ``spawn`` re-runs the user's main script).

``flush()`` is the checkpoint barrier: it returns once every record shipped before it was
acknowledged by the broker, with the number of records that failed since the last flush.
The child ignores SIGINT / SIGTERM: the daemon decides when it stops (after its final
checkpoint), and a child whose parent vanished flushes and exits.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Optional

__all__ = ["ProcessSender", "SenderError"]

_BATCH = 256


class SenderError(RuntimeError):
    """The sender process could not start or died."""


def _child(conn: Any, producer_kwargs: dict, client: str = "kafka-python") -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from .producers import make_producer

        producer = make_producer(producer_kwargs, client)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    confluent = client == "confluent-kafka"
    state = {"errors": 0, "first": None}

    def failed(exc: BaseException) -> None:
        state["errors"] += 1
        if state["first"] is None:
            state["first"] = repr(exc)

    try:
        while True:
            try:
                kind, body = conn.recv()
            except EOFError:  # the daemon is gone: deliver what we have and stop
                producer.flush()
                return
            if kind == "records":
                if confluent:  # failures are counted by the producer (take_errors)
                    for topic, value, key, partition, headers in body:
                        producer.send(topic, value, key, headers, partition)
                else:
                    for topic, value, key, partition, headers in body:
                        producer.send(topic, value=value, key=key, partition=partition,
                                      headers=headers).add_errback(failed)
            elif kind == "flush":
                producer.flush()
                if confluent:
                    n, first = producer.take_errors()
                    state["errors"] += n
                    state["first"] = state["first"] or first
                conn.send(("flushed", (state["errors"], state["first"])))
                state["errors"], state["first"] = 0, None
            elif kind == "close":
                producer.close(timeout=body)
                conn.send(("closed", None))
                return
    except Exception as exc:  # tell the daemon why before going away
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        producer.close(timeout=10)


class ProcessSender:
    """A Kafka producer in a child process, fed in batches."""

    def __init__(self, producer_kwargs: dict, batch: int = _BATCH, start_timeout: float = 60.0, wait: bool = True,
                 client: str = "kafka-python"):
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the streammoe package's parent folder
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "streammoe.service.sender", str(theirs.fileno())],
                                          pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._batch = int(batch)
        self._buf: list[tuple] = []
        self._conn.send(("start", (producer_kwargs, client)))
        self._start_timeout = start_timeout
        self._ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the child's producer exists (raises :class:`SenderError` if it could not
        be created).  The daemon calls it after its own start-up steps, so the child's
        interpreter start and imports overlap them."""
        if self._ready:
            return
        kind, body = self._recv(self._start_timeout, "start")
        if kind != "ready":
            self._proc.wait(5)
            raise SenderError(f"the Kafka producer could not be created: {body}")
        self._ready = True

    def send(self, topic: str, value: bytes, key: Optional[bytes] = None, partition: Optional[int] = None,
             headers: Optional[list] = None) -> None:
        """Queue one record (shipped to the child every ``batch`` records)."""
        self._buf.append((topic, value, key, partition, headers))
        if len(self._buf) >= self._batch:
            self._ship()

    def ship(self) -> None:
        """Hand what is queued to the child now (the daemon calls it after every batch, so a
        partial batch does not wait for the next one)."""
        self._ship()

    def _ship(self) -> None:
        if self._buf:
            self.wait_ready()
            buf, self._buf = self._buf, []
            try:
                self._conn.send(("records", buf))
            except OSError as exc:
                raise self._gone(exc) from exc

    def _gone(self, exc: BaseException) -> SenderError:
        """The child went away: its last words (an ``error`` message) say why, if it sent them."""
        why = str(exc)
        try:
            while self._conn.poll(1.0):
                kind, body = self._conn.recv()
                if kind == "error":
                    why = body
                    break
        except (EOFError, OSError):
            pass
        return SenderError(f"the sender process stopped (exit code {self._proc.poll()}): {why}")

    def _recv(self, timeout: float, what: str) -> tuple:
        if not self._conn.poll(timeout):
            raise SenderError(f"the sender process did not answer {what} within {timeout:g} s")
        try:
            return self._conn.recv()
        except EOFError as exc:
            raise SenderError(f"the sender process died during {what} (exit code {self._proc.poll()})") from exc

    def flush(self, timeout: float = 300.0) -> tuple[int, Optional[str]]:
        """Wait until everything sent so far is acknowledged; returns ``(failed records,
        first error)`` since the previous flush."""
        self.wait_ready()
        self._ship()
        try:
            self._conn.send(("flush", None))
        except OSError as exc:
            raise self._gone(exc) from exc
        kind, body = self._recv(timeout, "flush")
        if kind == "error":
            raise SenderError(f"the sender process stopped: {body}")
        return body

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued and stop the child (idempotent)."""
        if self._conn.closed:
            return
        try:
            if self._proc.poll() is None:
                self.wait_ready()
                self._ship()
                self._conn.send(("close", timeout))
                self._recv(timeout + 5, "close")
        except (SenderError, OSError):
            pass
        finally:
            self._conn.close()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


class InProcessSender:
    """The same interface over a ``KafkaProducer`` in this process (``serve.producer_process
    = false``: simpler, one process fewer, slower)."""

    def __init__(self, producer_kwargs: dict, client: str = "kafka-python"):
        from .producers import make_producer

        self._producer = make_producer(producer_kwargs, client)
        self._confluent = client == "confluent-kafka"
        self._errors = 0
        self._first: Optional[str] = None

    def _failed(self, exc: BaseException) -> None:
        self._errors += 1
        if self._first is None:
            self._first = repr(exc)

    def send(self, topic: str, value: bytes, key: Optional[bytes] = None, partition: Optional[int] = None,
             headers: Optional[list] = None) -> None:
        if self._confluent:
            self._producer.send(topic, value, key, headers, partition)
            return
        self._producer.send(topic, value=value, key=key, partition=partition, headers=headers
                            ).add_errback(self._failed)

    def ship(self) -> None:
        """Nothing to do: ``send`` already handed the record to the producer."""

    def wait_ready(self) -> None:
        """Nothing to wait for: the producer was created in the constructor."""

    def flush(self, timeout: float = 300.0) -> tuple[int, Optional[str]]:
        self._producer.flush(timeout)
        if self._confluent:
            n, first = self._producer.take_errors()
            self._errors += n
            self._first = self._first or first
        out = (self._errors, self._first)
        self._errors, self._first = 0, None
        return out

    def close(self, timeout: float = 10.0) -> None:
        self._producer.close(timeout=timeout)


def make_sender(producer_kwargs: dict, in_child: bool, wait: bool = True, client: str = "kafka-python") -> Any:
    """A :class:`ProcessSender` (``in_child``; with ``wait=False`` call ``wait_ready()`` before
    relying on it) or an :class:`InProcessSender`, producing with ``client`` (see
    :mod:`.producers`)."""
    if in_child:
        return ProcessSender(producer_kwargs, wait=wait, client=client)
    return InProcessSender(producer_kwargs, client=client)


def _main(argv: list[str]) -> None:
    conn = Connection(int(argv[1]))
    kind, (producer_kwargs, client) = conn.recv()
    if kind == "start":
        _child(conn, producer_kwargs, client)


if __name__ == "__main__":
    _main(sys.argv)
