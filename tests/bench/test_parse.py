"""Parsing real wrk 4.1, hey 0.1.4 and ab 2.3 outputs (captured against the loopback stack)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shoplab_bench.parse import ParseError, parse_ab, parse_hey, parse_wrk

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_wrk_keep_alive_run():
    result = parse_wrk(text("wrk_get_products.txt"))
    assert result["requests"] == 3696
    assert result["rps"] == pytest.approx(1199.60)
    assert result["duration_s"] == pytest.approx(3.08)
    assert result["latency_ms"]["p50"] == pytest.approx(47.22)
    assert result["latency_ms"]["p99"] == pytest.approx(167.89)
    assert result["latency_ms"]["max"] == pytest.approx(234.43)
    assert result["non_2xx"] == 0
    assert result["errors"] == 0


def test_wrk_counts_non_2xx():
    result = parse_wrk(text("wrk_non2xx.txt"))
    assert result["non_2xx"] == result["requests"] == 679


def test_wrk_that_never_connected_is_not_a_result():
    with pytest.raises(ParseError):
        parse_wrk(text("wrk_socket_errors.txt"))


def test_wrk_socket_errors_are_counted():
    out = text("wrk_get_products.txt").replace(
        "Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 12\nRequests/sec:"
    )
    result = parse_wrk(out)
    assert result["errors"] == 15
    assert result["error_detail"]["timeout"] == 12


def test_wrk_without_latency_distribution_is_refused():
    out = "\n".join(line for line in text("wrk_get_products.txt").splitlines() if "%" not in line)
    with pytest.raises(ParseError, match="--latency"):
        parse_wrk(out)


def test_hey_fixed_rate_run():
    result = parse_hey(text("hey_get_products.txt"))
    assert result["rps"] == pytest.approx(397.8644)
    assert result["requests"] == 1200
    assert result["statuses"] == {200: 1200}
    assert result["latency_ms"]["p99"] == pytest.approx(28.7)
    assert result["latency_ms"]["mean"] == pytest.approx(8.1)
    assert result["non_2xx"] == 0


def test_hey_non_2xx_and_errors():
    out = text("hey_get_products.txt").replace(
        "[200]\t1200 responses", "[200]\t1100 responses\n  [503]\t100 responses"
    )
    out += "\nError distribution:\n  [7]\tGet http://x: dial tcp: connection refused\n"
    result = parse_hey(out)
    assert result["non_2xx"] == 100
    assert result["errors"] == 7


def test_ab_without_keep_alive():
    result = parse_ab(text("ab_get_products.txt"))
    assert result["requests"] == 1000
    assert result["rps"] == pytest.approx(704.91)
    assert result["latency_ms"]["mean"] == pytest.approx(70.931)
    assert result["latency_ms"]["p99"] == 250
    assert result["latency_ms"]["max"] == 271
    assert result["keep_alive_requests"] == 0


def test_ab_keep_alive_and_non_2xx():
    assert parse_ab(text("ab_k_nginx_products.txt"))["keep_alive_requests"] == 2000
    assert parse_ab(text("ab_non2xx.txt"))["non_2xx"] == 200
