#!/bin/sh
# Builds and runs the Go sublist benchmark against nats-server's source as Debian's
# golang-github-nats-io-nats-server-dev package installs it, offline: GOPATH mode, every
# dependency from /usr/share/gocode, nothing downloaded. Arguments are passed on (case
# filters, as for the core's bench). NATS_SERVER_SRC names another copy of the source.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${NATS_SERVER_SRC:-/usr/share/gocode/src/github.com/nats-io/nats-server}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A GOPATH of our own in front of Debian's: the driver, and the server under its
# module path (.../v2), which GOPATH mode does not map to the unversioned directory.
mkdir -p "$work/src/github.com/nats-io/nats-server" "$work/src/turnout"
ln -s "$src" "$work/src/github.com/nats-io/nats-server/v2"
ln -s "$here" "$work/src/turnout/go_sublist"
server="$work/src/github.com/nats-io/nats-server/v2/server"
# The hook joins the server package without a file written into its directory.
printf '{"Replace": {"%s/zz_turnout_sublist_hook.go": "%s/hook/sublist_hook.go"}}\n' \
    "$server" "$here" > "$work/overlay.json"
cd "$work/src/turnout/go_sublist"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOFLAGS= \
    go build -overlay "$work/overlay.json" -o "$work/go_sublist" .
"$work/go_sublist" "$@"
