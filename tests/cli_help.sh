#!/usr/bin/env bash
# The CLI lists its commands, documents each one, and refuses unknown ones with exit 2.
set -u
rlhf=$1
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
out=$("$rlhf" help)
check "help lists pretrain" '[[ $out == *pretrain* ]]'
check "help lists db" '[[ $out == *" db "* ]]'
"$rlhf" no-such-command 2>/tmp/rlhf-cli-err.$$; rc=$?
check "unknown command exits 2" '[ $rc -eq 2 ]'
check "unknown command is named" 'grep -q no-such-command /tmp/rlhf-cli-err.$$'
rm -f /tmp/rlhf-cli-err.$$
for c in $("$rlhf" help | awk '/^  [a-z]/{print $1}'); do
  "$rlhf" "$c" --help >/dev/null 2>&1; rc=$?
  check "'rlhf $c --help' exits 0 (got $rc)" '[ $rc -eq 0 ]'
done
"$rlhf" version | grep -q 'rlhf.c' || { echo "FAIL: version"; fail=1; }
exit $fail
