"""A gunicorn worker that gives every client connection its own thread and serves it in a loop.

gunicorn's gthread worker hands a keep-alive connection back to its poller after every response and
to a pool thread for the next request: two thread hand-offs, a pipe wake-up and an epoll
re-registration per request. Behind our gateway every connection is a pooled keep-alive one, so that
bookkeeping cost more CPU than the request itself (py-spy: ~40 % of the gateway's samples). Here a
connection's thread reads, answers and waits for the next request on the same socket: per request one
recv and one send, no hand-off. Concurrency is the number of open connections (`worker_connections`),
not a thread-pool size, so a slow upstream never queues other clients behind a busy pool.

Plain HTTP/1.1 and 1.0 requests are parsed and answered by `shoplab.server.plainhttp` (HTTP_FAST_PATH, on by
default); the first request that is anything else hands the connection, with the bytes already read, to
gunicorn's own parser, limits, `wsgi.create`, error answers (400/431…) and hooks. max_requests and the
arbiter's heartbeat and graceful shutdown are gunicorn's in both cases.

Kept (make bench 2026-12-05, 5 interleaved rounds): stock gthread served 2,846 req/s through the
gateway against 12,186 for our stack; it is also the loop workers' path for non-plain requests.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import ssl
import threading
import time
from datetime import datetime

from gunicorn import config, http, util
from gunicorn.http import wsgi
from gunicorn.workers import base

from shoplab.core import deadlines
from shoplab.server import plainhttp

ACCEPT_DELAY_PER_CONNECTION = 0.0001
ACCEPT_DELAY_MAX = 0.02


class KeepAliveThreadWorker(base.Worker):
    def init_process(self) -> None:
        self._lock = threading.Lock()
        # Open connections, and whether each is inside a request right now (idle ones are closed first
        # at shutdown; busy ones get graceful_timeout to finish).
        self._connections: dict[socket.socket, bool] = {}
        self._plain_http = self._plain_http_applies()
        self._limits = plainhttp.Limits.from_gunicorn(self.cfg)
        self._gunicorn_environ = wsgi.base_environ(self.cfg)
        # Read once: each cfg attribute is a lookup through gunicorn's settings (~0.8 µs, per request here).
        self._keepalive = bool(self.cfg.keepalive)
        # The service's Config (shoplab.serve's application carries it): the time limits and the share of
        # connections one client may hold (core.deadlines).
        self._time_limits = deadlines.Limits.of(
            getattr(self.app, "config", None),
            self.cfg.keepalive or self.timeout or 30,
            self.cfg.worker_connections,
        )
        self._per_client = deadlines.PerClient(self._time_limits.per_client)
        super().init_process()

    def _plain_http_applies(self) -> bool:
        """The fast path skips what these settings add (TLS, proxy protocol, gunicorn's access log, request
        hooks, SCRIPT_NAME): with any of them set, every request goes through gunicorn's parser."""
        cfg = self.cfg
        return (
            getattr(getattr(self.app, "config", None), "http_fast_path", True)
            and not cfg.is_ssl
            and cfg.proxy_protocol in (None, False, "off")
            and not cfg.accesslog
            and cfg.pre_request is config.PreRequest.default
            and cfg.post_request is config.PostRequest.default
            and not os.environ.get("SCRIPT_NAME")
        )

    # --- the accepting thread -------------------------------------------------------------------

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for listener in self.sockets:
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
        selector.register(self.PIPE[0], selectors.EVENT_READ)  # signals wake us through this pipe
        limit = self.cfg.worker_connections
        ppid = self.ppid
        while self.alive:
            self.notify()
            full = len(self._connections) >= limit
            for key, _ in selector.select(timeout=0.2 if full else 1.0):
                if key.fileobj == self.PIPE[0]:
                    os.read(self.PIPE[0], 512)
                elif not full:
                    self._yield_to_idler_workers()
                    self._accept(key.fileobj)
            if os.getppid() != ppid:
                self.log.info("Parent changed, shutting down: %s", self)
                break
        selector.close()
        self._shutdown()

    def _yield_to_idler_workers(self) -> None:
        """Every worker wakes for a new connection and the first to call accept() gets it; left alone,
        one worker ends up with 40 of a load tool's 64 connections and its clients wait 1.7x longer.
        Like nginx's accept_disabled, a worker holding more connections waits a little longer before
        accepting (0.1 ms per connection it holds), so the less loaded one usually takes it."""
        if self.cfg.workers > 1 and self._connections:
            time.sleep(min(ACCEPT_DELAY_PER_CONNECTION * len(self._connections), ACCEPT_DELAY_MAX))

    def _accept(self, listener: socket.socket) -> None:
        # One connection per wake-up: every worker is woken for a new connection, so taking one each
        # spreads a burst of connections (a load tool's, or the gateway's pool) evenly over the workers.
        try:
            client, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            if error.errno in (errno.ECONNABORTED, errno.EPROTO):
                return
            raise
        if not self._per_client.admit(addr):
            util.close(client)  # past its share: the other clients keep theirs
            return
        self._serve_on_thread(listener, client, addr)

    def _serve_on_thread(
        self,
        listener: socket.socket,
        client: socket.socket,
        addr,
        buffered: bytes = b"",
        started: float | None = None,
    ) -> None:
        """Give `client` (admitted by `_per_client`) a thread of its own; `buffered`: bytes already read from
        it (a request's start), `started`: when that request began (None: the connection starts now)."""
        with self._lock:
            self._connections[client] = False
        started = time.monotonic() if started is None else started
        thread = threading.Thread(
            target=self._serve_connection, args=(listener, client, addr, buffered, started), daemon=True
        )
        try:
            thread.start()
        except RuntimeError as error:  # out of threads (a pids limit): refuse this one, keep serving
            with self._lock:
                self._connections.pop(client, None)
            self._per_client.release(addr)
            util.close(client)
            self.log.warning("connection refused, no thread for it: %s", error)

    def _shutdown(self) -> None:
        for listener in self.sockets:
            util.close(listener)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline:
            self.notify()
            with self._lock:
                idle = [conn for conn, busy in self._connections.items() if not busy]
                left = len(self._connections)
            for conn in idle:
                _wake(conn)  # unblocks the thread waiting for a next request that will not come
            if not left:
                return
            time.sleep(0.05)
        self.log.warning("%d connection(s) still busy after graceful_timeout", len(self._connections))

    # --- one thread per connection --------------------------------------------------------------

    def _serve_connection(
        self, listener: socket.socket, client: socket.socket, addr, buffered: bytes, started: float
    ) -> None:
        req = None
        try:
            client.setblocking(True)
            util.close_on_exec(client)
            client.settimeout(self._time_limits.request_timeout)  # the TLS handshake, if any
            if self.cfg.is_ssl:
                from gunicorn import sock

                client = sock.ssl_wrap_socket(client, self.cfg)
            # Every read, ours and gunicorn's parser's, within the request deadline or the idle time.
            reads = deadlines.TimedReads(client, self._time_limits, started)
            server = listener.getsockname()
            parser = self._gunicorn_parser_after_plain(client, reads, addr, server, buffered)
            for req in parser or ():
                self._set_busy(client, True)
                keep_alive = self._handle_request(req, client, addr, server)
                self._set_busy(client, False)
                if not keep_alive:
                    break
                # What the app left of the body is this request's, read within its deadline: drained later
                # by the parser, it would start the next request's clock and cut an idle keep-alive
                # connection at REQUEST_TIMEOUT (a 401 before the body arrived whole did).
                while req.body.read(65536):
                    pass
                reads.next_request(pending=bool(parser.unreader.buf.getvalue()))
        except http.errors.NoMoreData:
            pass  # the client closed between requests: the normal end of a keep-alive connection
        except (TimeoutError, StopIteration):
            pass  # idle past keep-alive, or HTTP says this was the last request
        except ssl.SSLError as error:
            if error.args[0] != ssl.SSL_ERROR_EOF:
                self.handle_error(req, client, addr, error)
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                self.log.exception("Socket error processing request.")
        except BaseException as error:  # gunicorn answers 400/431/500 for these itself
            self.handle_error(req, client, addr, error)
        finally:
            with self._lock:
                self._connections.pop(client, None)
            self._per_client.release(addr)
            util.close(client)

    def _gunicorn_parser_after_plain(
        self, client: socket.socket, reads: deadlines.TimedReads, addr, server, buffered: bytes
    ):
        """Serve plain requests first; then gunicorn's parser from the first one that is not (None: done)."""
        handover = buffered
        if self._plain_http and isinstance(addr, tuple) and isinstance(server, tuple):
            handover = self._serve_plain(client, reads, addr, server, buffered)
            if handover is None:
                return None
        parser = http.get_parser(self.cfg, reads, addr)
        if handover:
            parser.unreader.unread(handover)  # gunicorn parses from the request we did not take
        return parser

    def _serve_plain(
        self, client: socket.socket, reads: deadlines.TimedReads, addr: tuple, server: tuple, buffer: bytes
    ) -> bytes | None:
        """Serve plain requests until the connection ends (None) or one is not plain: then return the
        bytes read so far, from that request's first byte on, for gunicorn's parser."""
        base_environ = plainhttp.listener_environ(self._gunicorn_environ, server)
        while True:
            end = buffer.find(b"\r\n\r\n")
            while end < 0:
                if plainhttp.for_gunicorn_already(buffer):
                    return buffer
                chunk = reads.recv(65536)
                if not chunk:
                    return buffer or None  # None: the client closed between requests, the normal end
                buffer += chunk
                end = buffer.find(b"\r\n\r\n")
            request = plainhttp.parse_head(buffer[:end], self._limits)
            if request is None:
                return buffer
            self._set_busy(client, True)
            buffer = buffer[end + 4 :]
            while len(buffer) < request.content_length:
                chunk = reads.recv(65536)
                if not chunk:
                    return None  # the client left in the middle of the body
                buffer += chunk
            body, buffer = buffer[: request.content_length], buffer[request.content_length :]
            keep_alive = self._handle_plain(request, body, client, addr, base_environ)
            self._set_busy(client, False)
            if not keep_alive:
                return None
            reads.next_request(pending=bool(buffer))

    def _handle_plain(self, request, body: bytes, client: socket.socket, addr: tuple, base_environ) -> bool:
        """Serve one plain request; returns whether the connection may carry another."""
        environ = plainhttp.build_environ(request, body, base_environ, client, addr)
        close = self._count_request() or request.close
        send = deadlines.send_within(client, self._time_limits.write_timeout)
        resp = plainhttp.PlainResponse(send, request.method, close, request.version)
        try:
            plainhttp.run_app(self.wsgi, environ, resp)
        except OSError:
            raise
        except Exception:
            self.log.exception("Error handling request %s %s", request.method, request.target)
            if not resp.headers_sent:  # otherwise half a response is on the wire: closing is all that is left
                with contextlib.suppress(OSError):
                    util.write_error(client, 500, "Internal Server Error", "")
            return False
        return resp.keeps_alive()

    def _count_request(self) -> bool:
        """Count one request against max_requests; True when its connection must close after it."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        return not self.alive or not self._keepalive

    def _set_busy(self, client: socket.socket, busy: bool) -> None:
        # No lock: only this connection's own thread removes its entry, so the key is there, and
        # replacing a value is one atomic dict operation that never changes the dict's size (twice per
        # request, 32+ threads: the shared lock was a contention point that cost GIL hand-offs).
        self._connections[client] = busy

    def _handle_request(self, req, client: socket.socket, addr, server) -> bool:
        """Serve one request; returns whether the connection may carry another."""
        environ: dict = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, client, addr, server, self.cfg)
            environ["wsgi.multithread"] = True
            if self._count_request():
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            # The body is read: from here on the socket only writes, each send within WRITE_TIMEOUT.
            client.settimeout(self._time_limits.write_timeout)
            try:
                if isinstance(respiter, environ["wsgi.file_wrapper"]):
                    resp.write_file(respiter)
                else:
                    for item in respiter:
                        resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:
                # Half a response is on the wire: the only honest thing left is to close.
                self.log.exception("Error handling request")
                return False
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")


def _wake(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
