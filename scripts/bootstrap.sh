#!/usr/bin/env bash
# bootstrap.sh — set up a fresh Debian 12 machine and do one job.
#   bash scripts/bootstrap.sh run    install deps, build, start the REPL on the built-in default model
#   bash scripts/bootstrap.sh test   install deps, build (release, ASan/UBSan, fuzz), run every test
#   bash scripts/bootstrap.sh build  install deps and build only
# Safe to run again: packages already present are not reinstalled, builds are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential meson ninja-build pkg-config libopenblas-dev libcjson-dev
          libsqlite3-dev libreadline-dev libpcre2-dev python3 python3-numpy python3-torch
          python3-jinja2   # the reference renderer of the chat-template parity test
          tmux             # the REPL's terminal test
          bsdutils   # bsdutils: script(1), the pretrain CLI test's terminal
          clang libclang-rt-14-dev libomp-dev)  # the libFuzzer harnesses of fuzz/ (build-fuzz)

deps() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "bootstrap: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
    [ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
    ninja -C build >/dev/null
}

build_sanitized() {
    [ -f build-san/build.ninja ] || meson setup build-san --buildtype=debug \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    ninja -C build-san >/dev/null
}

# The libFuzzer harnesses (fuzz/): clang, ASan + UBSan, coverage-instrumented libraries; seeds
# from ../shared/data. run-tests.sh runs each for ~20 s as the 'fuzz' suite.
build_fuzz() {
    [ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    ninja -C build-fuzz >/dev/null
    bash fuzz/make_seeds.sh build-fuzz >/dev/null
}

case "${1:-}" in
    run)
        deps
        build
        shift
        # the REPL on the built-in default model (models/default); without it, the older demo
        if [ -f models/default/model.safetensors ]; then exec ./build/repl/rlhf chat "$@"; fi
        exec bash scripts/demo.sh "$@"
        ;;
    test)
        deps
        build
        build_sanitized
        build_fuzz
        exec bash scripts/run-tests.sh
        ;;
    build)
        deps
        build
        ;;
    *)
        echo "usage: bash scripts/bootstrap.sh run|test|build" >&2
        exit 2
        ;;
esac
