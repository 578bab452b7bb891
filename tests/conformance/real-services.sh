#!/usr/bin/env bash
# The real Matomo 5.0.2 and the real cloudpanel-api gateway on 127.0.0.1, for the conformance tier.
#
#   bash tests/conformance/real-services.sh start [STATE_DIR]   # default /tmp/hosting-automator-real
#   bash tests/conformance/real-services.sh stop  [STATE_DIR]
#
# They come from the real-services kit (matomo.sh, gateway.sh and their tarballs): REAL_KIT names its folder,
# by default `shared/real` beside this repository's folder. Run as root on Debian 12: the kit installs
# MariaDB, Apache with PHP, and Node's packages when they are missing.
#
# start writes STATE_DIR/real.env, which the conformance tests read (REAL_SERVICES_ENV names another file):
#   Matomo on MATOMO_PORT (default 8191) with three tokens (super user, view only, secure only);
#   gateway "main" on GATEWAY_PORT (default 8192), its rate limit raised out of the tests' way;
#   gateway "limited" on LIMITED_GATEWAY_PORT (default 8193), 3 requests per window, to see its real 429.
# Each gateway runs this repository's fake clpctl (tests/standins/fake_clpctl.py) with its state in STATE_DIR,
# in a mount namespace of its own where STATE_DIR/home is /home: the gateway's site listing reads
# /home/<site user>/htdocs/<domain>, and the fake clpctl makes those folders as the real one does.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KIT=${REAL_KIT:-$(cd "$REPO/.." && pwd)/shared/real}
ACTION=${1:-}
STATE=${2:-/tmp/hosting-automator-real}
MATOMO_PORT=${MATOMO_PORT:-8191}
GATEWAY_PORT=${GATEWAY_PORT:-8192}
LIMITED_GATEWAY_PORT=${LIMITED_GATEWAY_PORT:-8193}
say() { echo "real-services: $*"; }
die() { echo "real-services: $*" >&2; exit 1; }

[ -f "$KIT/matomo.sh" ] && [ -f "$KIT/gateway.sh" ] || die "no real-services kit at $KIT (set REAL_KIT)"
case "$STATE" in /*) ;; *) die "STATE_DIR must be an absolute path" ;; esac

start_gateway() {  # start_gateway NAME PORT RATE_LIMIT
    local name=$1 port=$2 limit=$3
    # shellcheck disable=SC2016
    unshare --mount --propagation private env CLPCTL_DIR="$STATE/bin" FAKE_CLPCTL_DB="$STATE/clpctl.db" \
        FAKE_CLPCTL_CONTROL="$STATE/clpctl-control.json" FAKE_CLPCTL_HOME=/home \
        GATEWAY_DEPS_DIR="$STATE/gateway-deps" RATE_LIMIT_MAX_REQUESTS="$limit" \
        bash -c 'mount --bind "$1" /home && exec bash "$2" start "$3" "$4"' \
        _ "$STATE/home" "$KIT/gateway.sh" "$STATE/gateway-$name" "$port"
}

case "$ACTION" in
start)
    mkdir -p "$STATE/bin" "$STATE/home"
    chmod 0755 "$STATE"
    python=$REPO/.venv/bin/python
    [ -x "$python" ] || python=$(command -v python3)
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$python" "$REPO/tests/standins/fake_clpctl.py" > "$STATE/bin/clpctl"
    chmod 0755 "$STATE/bin/clpctl"
    : > "$STATE/clpctl-control.json"
    bash "$KIT/matomo.sh" start "$STATE/matomo" "$MATOMO_PORT"
    start_gateway main "$GATEWAY_PORT" 1000000
    start_gateway limited "$LIMITED_GATEWAY_PORT" 3
    tokens=$STATE/matomo/tokens.json
    token() { "$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tokens" "$1"; }
    value() { sed -n "s/^$1=//p" "$2"; }
    ( umask 077
      {
        echo "REAL_MATOMO_DIR=$STATE/matomo"
        echo "REAL_MATOMO_URL=$(value MATOMO_API_URL "$STATE/matomo/matomo.env")"
        echo "REAL_MATOMO_TOKEN=$(token super)"
        echo "REAL_MATOMO_VIEW_TOKEN=$(token view_only)"
        echo "REAL_MATOMO_SECURE_TOKEN=$(token secure_only)"
        echo "REAL_GATEWAY_URL=$(value CLOUDPANEL_API_URL "$STATE/gateway-main/gateway.env")"
        echo "REAL_GATEWAY_TOKEN=$(value CLOUDPANEL_API_TOKEN "$STATE/gateway-main/gateway.env")"
        echo "REAL_LIMITED_GATEWAY_URL=$(value CLOUDPANEL_API_URL "$STATE/gateway-limited/gateway.env")"
        echo "REAL_LIMITED_GATEWAY_TOKEN=$(value CLOUDPANEL_API_TOKEN "$STATE/gateway-limited/gateway.env")"
        echo "REAL_CLPCTL_DB=$STATE/clpctl.db"
        echo "REAL_CLPCTL_CONTROL=$STATE/clpctl-control.json"
        echo "REAL_CLPCTL_HOME=$STATE/home"
      } > "$STATE/real.env" )
    say "ready: $STATE/real.env"
    ;;
stop)
    for name in main limited; do
        [ -d "$STATE/gateway-$name" ] && bash "$KIT/gateway.sh" stop "$STATE/gateway-$name"
    done
    [ -d "$STATE/matomo" ] && bash "$KIT/matomo.sh" stop "$STATE/matomo"
    rm -f "$STATE/real.env"
    ;;
*) die "usage: real-services.sh start|stop [STATE_DIR]" ;;
esac
