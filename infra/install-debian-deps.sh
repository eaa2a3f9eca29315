#!/usr/bin/env bash
# Debian packages the team servers and their tests need: PostgreSQL (infra/team.py runs its initdb/pg_ctl),
# docker-compose (tests/team/test_compose.py checks infra/docker-compose.yml with `config`) and chromium with its
# driver (tests/team/browser.py looks at the Prefect and MLflow UIs in a real browser; selenium is given
# /usr/bin/chromedriver, so nothing is downloaded at test time). Fast no-op when present.
set -euo pipefail

missing=()
# The server binaries, not just a client: team.py looks for /usr/lib/postgresql/<major>/bin/initdb.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-debian-deps: postgresql, docker-compose, chromium and chromium-driver present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian-deps: missing Debian packages: ${missing[*]}; install them as root:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "install-debian-deps: installing ${missing[*]}"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
