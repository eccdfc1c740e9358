"""The nginx baseline's configuration (templates/nginx.conf.j2) is valid and pools upstream connections."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from shoplab_bench.floor import render_nginx

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def conf(tmp_path) -> str:
    return render_nginx(
        listen="127.0.0.1:18080",
        products=["127.0.0.1:15001", "127.0.0.1:15002"],
        orders=["127.0.0.1:15003"],
        run_dir=str(tmp_path),
    )


def test_round_robin_keepalive_upstreams(tmp_path):
    text = conf(tmp_path)
    products = text.split("upstream shoplab_products {", 1)[1].split("}", 1)[0]
    assert "server 127.0.0.1:15001;" in products
    assert "server 127.0.0.1:15002;" in products
    assert "keepalive 64;" in products
    # Without HTTP/1.1 and an empty Connection header nginx closes every upstream connection.
    assert "proxy_http_version 1.1;" in text
    assert 'proxy_set_header Connection "";' in text
    assert "listen 127.0.0.1:18080;" in text


@pytest.mark.skipif(not shutil.which(NGINX), reason="needs nginx (apt: nginx-light)")
def test_nginx_accepts_it(tmp_path):
    path = tmp_path / "nginx.conf"
    path.write_text(conf(tmp_path))
    result = subprocess.run([NGINX, "-t", "-c", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
