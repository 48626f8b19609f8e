# transcript.sh — sourced by the CLI transcript tests (cli_db.sh, cli_generate.sh).
#   transcript_run SCRIPT ACTUAL      runs each line of SCRIPT with eval in the current directory
#                                     and writes "$ line", what it printed (stdout and stderr) and
#                                     "[exit N]" for a non-zero status to ACTUAL; blank lines and
#                                     lines starting with '#' are copied as they are.
#   transcript_finish NAME ACTUAL EXPECTED
#                                     compares ACTUAL (already masked by the caller) with EXPECTED
#                                     through transcript_compare.py: text and integers exactly,
#                                     floats within the tolerance stated there (another CPU prints
#                                     other low digits); with RLHF_UPDATE_TRANSCRIPT=1 rewrites
#                                     EXPECTED instead; exits.
transcript_run() {
    local script=$1 actual=$2 line out rc
    : > "$actual"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '' | '#'*) printf '%s\n' "$line" >> "$actual"; continue ;;
        esac
        printf '$ %s\n' "$line" >> "$actual"
        out=$(eval "$line" 2>&1)
        rc=$?
        [ -n "$out" ] && printf '%s\n' "$out" >> "$actual"
        [ $rc -ne 0 ] && printf '[exit %d]\n' "$rc" >> "$actual"
    done < "$script"
}

transcript_finish() {
    local name=$1 actual=$2 expected=$3
    if [ "${RLHF_UPDATE_TRANSCRIPT:-0}" = 1 ]; then
        cp "$actual" "$expected"
        echo "updated $expected"
        exit 0
    fi
    if /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/transcript_compare.py" "$expected" "$actual"; then
        echo "$name: transcript matches ($(grep -c '^\$ ' "$actual") commands)"
        exit 0
    fi
    echo "FAIL: $name transcript differs from $expected (see diff above)"
    exit 1
}
