"""A small thread-safe PostgreSQL pool: connections are reused, never opened per request."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from shoplab.core.problems import ProblemError

log = logging.getLogger("shoplab.db")

# Errors that mean "the database is not answering", as opposed to a bug in a query.
UNAVAILABLE_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)
# A statement cancelled by statement_timeout or lock_timeout: the connection itself is fine.
TIMED_OUT_ERRORS = (psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable)


class Database:
    """Connections are opened lazily, up to `maxconn`, and kept open for reuse.

    (psycopg2.pool keeps only `minconn` idle connections and closes every other one when it is returned,
    which under concurrency means a new connection per request.)
    """

    def __init__(
        self,
        url: str,
        maxconn: int = 10,
        wait_seconds: float = 5.0,
        statement_timeout: float = 4.0,
        lock_timeout: float = 2.0,
    ):
        """`statement_timeout`, `lock_timeout` (s): a long lock (a restore, a stuck transaction) or a slow
        query costs a request that long and its thread is free again, instead of holding every thread."""
        self.url = url
        self.maxconn = maxconn
        self.wait_seconds = wait_seconds
        statement_ms, lock_ms = round(statement_timeout * 1000), round(lock_timeout * 1000)
        self.options = f"-c statement_timeout={statement_ms} -c lock_timeout={lock_ms}"
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()
        # At most maxconn connections in use; callers past that wait their turn.
        self._slots = threading.BoundedSemaphore(maxconn)
        self._pid = os.getpid()

    def _connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            self.url, connect_timeout=3, keepalives=1, application_name="shoplab", options=self.options
        )

    def _checkout(self) -> psycopg2.extensions.connection:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's connections are not ours to use
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if conn.closed == 0:
                    return conn
        return self._connect()

    def _checkin(self, conn: psycopg2.extensions.connection, broken: bool) -> None:
        if broken or conn.closed != 0:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    @contextmanager
    def connection(self, autocommit: bool = False) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection inside one transaction: committed on success, rolled back on error.

        With autocommit, every statement is its own transaction (no BEGIN/COMMIT round trips): for work
        that is one statement anyway.
        """
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ProblemError(503, "All database connections are busy; try again.")
        try:
            conn = self._checkout()
            broken = False
            try:
                if conn.autocommit != autocommit:
                    conn.autocommit = autocommit
                yield conn
                conn.commit()
            except BaseException as error:
                broken = (
                    isinstance(error, UNAVAILABLE_ERRORS) and not isinstance(error, TIMED_OUT_ERRORS)
                ) or conn.closed != 0
                if not broken:
                    try:
                        conn.rollback()
                    except UNAVAILABLE_ERRORS:
                        broken = True
                raise
            finally:
                self._checkin(conn, broken)
        finally:
            self._slots.release()

    @contextmanager
    def cursor(self, autocommit: bool = False) -> Iterator[psycopg2.extensions.cursor]:
        with self.connection(autocommit) as conn, conn.cursor() as cur:
            yield cur

    def ping(self) -> bool:
        try:
            with self.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except (*UNAVAILABLE_ERRORS, ProblemError) as error:
            log.warning("database ping failed: %s", error)
            return False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def register_database_errors(app) -> None:
    """A database that does not answer is a 503 problem (try again), never a stack trace."""
    from shoplab.core.problems import problem

    @app.errorhandler(psycopg2.OperationalError)
    @app.errorhandler(psycopg2.InterfaceError)
    def _unavailable(error: Exception):
        log.warning("database unavailable: %s", error)
        return problem(503, "The database is not answering; try again.", headers={"Retry-After": "1"})

    @app.errorhandler(psycopg2.errors.QueryCanceled)
    @app.errorhandler(psycopg2.errors.LockNotAvailable)
    def _timed_out(error: Exception):
        log.warning("database statement timed out: %s", error)
        detail = "The database did not answer in time (DB_STATEMENT_TIMEOUT, DB_LOCK_TIMEOUT); try again."
        return problem(503, detail, headers={"Retry-After": "1"})
