"""The PostgreSQL fixture itself: a real PostgreSQL 15 server that the tests start, that keeps
its data and port across a restart, refuses connections while stopped, and gives each test
its own database."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator

import pytest
from ledger.pg_server import PostgresServer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def test_it_is_a_real_postgresql_15_server(engine: Engine, pg_server: PostgresServer) -> None:
    with engine.connect() as conn:
        version = conn.execute(text("select version()")).scalar_one()
        settings = {name: setting for name, setting in conn.execute(text(
            "select name, setting from pg_settings where name in "
            "('fsync', 'full_page_writes', 'synchronous_commit', 'listen_addresses', "
            "'server_encoding', 'port')"))}
    assert version.startswith("PostgreSQL 15."), version
    assert settings == {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",
                        "listen_addresses": "127.0.0.1", "server_encoding": "UTF8",
                        "port": str(pg_server.port)}
    url = make_url(pg_server.url)
    assert (url.drivername, url.host, url.username) == ("postgresql+psycopg", "127.0.0.1",
                                                        pg_server.user)


def test_the_server_runs_as_postgres_under_root_else_as_us(engine: Engine) -> None:
    with engine.connect() as conn:
        backend_pid = conn.execute(text("select pg_backend_pid()")).scalar_one()
    owner = os.stat(f"/proc/{backend_pid}").st_uid  # the server runs on this machine
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == expected


def test_create_insert_select(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("create table points (employee_id text primary key, points int)"))
        conn.execute(text("insert into points values (:e, :p)"),
                     [{"e": "emp-1", "p": 5}, {"e": "emp-2", "p": 7}])
    with engine.connect() as conn:
        rows = conn.execute(text("select employee_id, points from points order by 1")).all()
    assert [tuple(r) for r in rows] == [("emp-1", 5), ("emp-2", 7)]


def test_restart_keeps_data_and_port(engine: Engine, pg_server: PostgresServer) -> None:
    with engine.begin() as conn:
        conn.execute(text("create table kept (id int primary key, note text)"))
        conn.execute(text("insert into kept values (1, 'before the restart')"))
    port, data_dir, url = pg_server.port, pg_server.data_dir, pg_server.url

    pg_server.restart()

    assert pg_server.running()
    assert (pg_server.port, pg_server.data_dir, pg_server.url) == (port, data_dir, url)
    # pool_pre_ping is off here: the pooled connection died with the old server, so the first
    # use after the restart may fail; a fresh connection must work.
    engine.dispose()
    with engine.connect() as conn:
        assert conn.execute(text("select note from kept where id = 1")).scalar_one() == \
            "before the restart"


def test_a_stopped_server_refuses_connections_until_started(
        engine: Engine, pg_server: PostgresServer) -> None:
    with engine.begin() as conn:
        conn.execute(text("create table t (x int)"))
        conn.execute(text("insert into t values (42)"))
    port = pg_server.port
    pg_server.stop()
    try:
        assert not pg_server.running()
        engine.dispose()
        fresh = create_engine(engine.url, connect_args={"connect_timeout": 3})
        with pytest.raises(OperationalError), fresh.connect():
            pass
        fresh.dispose()
    finally:
        pg_server.start()
    assert pg_server.running() and pg_server.port == port
    with engine.connect() as conn:
        assert conn.execute(text("select x from t")).scalar_one() == 42


def test_stop_and_start_are_idempotent(pg_server: PostgresServer, pg_url: str) -> None:
    assert pg_server.start() is pg_server  # already running: nothing happens
    pg_server.stop()
    pg_server.stop()  # already stopped: nothing happens
    pg_server.start()
    assert pg_server.running()


def test_each_test_gets_its_own_database(pg_server: PostgresServer, pg_url: str) -> None:
    other_url = pg_server.create_database("another_database")
    try:
        assert make_url(other_url).database != make_url(pg_url).database
        first, second = create_engine(pg_url), create_engine(other_url)
        try:
            with first.begin() as conn:
                conn.execute(text("create table only_here (x int)"))
            with second.connect() as conn:
                assert conn.execute(text("select current_database()")).scalar_one() == \
                    "another_database"
                assert conn.execute(text("select to_regclass('only_here')")).scalar_one() \
                    is None
            with first.connect() as conn:
                assert conn.execute(text("select to_regclass('only_here')")).scalar_one() \
                    == "only_here"
        finally:
            first.dispose()
            second.dispose()
    finally:
        pg_server.drop_database("another_database")


_seen_databases: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_pg_url_gives_a_new_empty_database_each_time(pg_url: str, round_: int) -> None:
    database = make_url(pg_url).database
    assert database is not None and database not in _seen_databases
    _seen_databases.append(database)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("select current_database()")).scalar_one() == database
            assert conn.execute(text(
                "select count(*) from information_schema.tables "
                "where table_schema = 'public'")).scalar_one() == 0
            conn.execute(text("create table left_behind (x int)"))  # must not show up next time
    finally:
        engine.dispose()


def test_a_failed_start_reports_the_server_log() -> None:
    server = PostgresServer()
    try:
        server.start()
        server.stop()
        (server.data_dir / "postgresql.auto.conf").write_text("shared_buffers = 'nonsense'\n")
        with pytest.raises(RuntimeError, match="(?s)pg_ctl start failed.*last lines of"):
            server.start()
        assert not server.running()
    finally:
        server.close()
    assert server.root is None
