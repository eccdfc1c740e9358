"""A small thread-safe PostgreSQL pool: connections are reused, never opened per request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from shoplab.core.problems import ProblemError

log = logging.getLogger("shoplab.db")

# Errors that mean "the database is not answering", as opposed to a bug in a query.
UNAVAILABLE_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.pool.PoolError)


class Database:
    def __init__(self, url: str, minconn: int = 1, maxconn: int = 10, wait_seconds: float = 5.0):
        self.url = url
        self.minconn = minconn
        self.maxconn = maxconn
        self.wait_seconds = wait_seconds
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pool_lock = threading.Lock()
        # psycopg2's pool raises at once when empty; the semaphore makes callers wait their turn.
        self._slots = threading.BoundedSemaphore(maxconn)

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        # Created lazily, in the worker process: a pool must never be shared across a fork.
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self.minconn,
                        self.maxconn,
                        self.url,
                        connect_timeout=3,
                        keepalives=1,
                        application_name="shoplab",
                    )
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection inside one transaction: committed on success, rolled back on error."""
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise ProblemError(503, "The database connection pool is exhausted; try again.")
        try:
            pool = self._get_pool()
            conn = pool.getconn()
            broken = False
            try:
                yield conn
                conn.commit()
            except BaseException as error:
                broken = isinstance(error, UNAVAILABLE_ERRORS) or conn.closed != 0
                if not broken:
                    try:
                        conn.rollback()
                    except UNAVAILABLE_ERRORS:
                        broken = True
                raise
            finally:
                pool.putconn(conn, close=broken or conn.closed != 0)
        finally:
            self._slots.release()

    @contextmanager
    def cursor(self) -> Iterator[psycopg2.extensions.cursor]:
        with self.connection() as conn, conn.cursor() as cur:
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
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None


def register_database_errors(app) -> None:
    """A database that does not answer is a 503 problem (try again), never a stack trace."""
    from shoplab.core.problems import problem

    @app.errorhandler(psycopg2.OperationalError)
    @app.errorhandler(psycopg2.InterfaceError)
    @app.errorhandler(psycopg2.pool.PoolError)
    def _unavailable(error: Exception):
        log.warning("database unavailable: %s", error)
        return problem(503, "The database is not answering; try again.", headers={"Retry-After": "1"})
