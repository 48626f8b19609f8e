#!/usr/bin/env bash
# repl_tmux.sh — the real `rlhf chat` in a terminal: tmux starts it, types through send-keys and
# reads the screen with capture-pane. Checks tab completion (a unique command, then setting
# names), a multi-line prompt (trailing \ and a """ block), Ctrl-C during a long generation (the
# session survives and the next prompt works), Ctrl-D (the session ends), and history recalled
# by a second session.
#   usage: repl_tmux.sh RLHF
set -u
RLHF=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
DATA=${RLHF_SHARED_DATA:-$(dirname "$0")/../../shared/data}
command -v tmux > /dev/null || { echo "tmux is not installed (apt-get install tmux)"; exit 1; }
[ -f "$DATA/gpt2/encoder.json" ] || { echo "missing shared data $DATA"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-tmux-XXXXXX")
sock="$work/tmux.sock"
T() { tmux -S "$sock" "$@"; }
trap 'T kill-server 2> /dev/null; rm -rf "$work"' EXIT
fails=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; echo "---- screen ----"; screen; echo "----------------"; fails=$((fails + 1)); }
screen() { T capture-pane -p -J -S -300 -t chat 2> /dev/null; }
# wait_for REGEX [SECONDS]: until the screen matches (grep -E)
wait_for() {
    local deadline=$((SECONDS + ${2:-20}))
    while [ $SECONDS -lt $deadline ]; do
        screen | grep -Eq -- "$1" && return 0
        sleep 0.2
    done
    return 1
}
count() { screen | grep -Ec -- "$1"; }

# a model big enough that 3000 tokens take seconds: Ctrl-C must land mid-generation
"$RLHF" model new --family gpt2 --layers 2 --dim 128 --heads 2 --vocab 50257 --context 4096 --seed 5 \
    --out "$work/m" > /dev/null || exit 1
cp "$DATA/gpt2/encoder.json" "$DATA/gpt2/vocab.bpe" "$work/m/"
mkdir "$work/home"
start() {
    T -f /dev/null new-session -d -s chat -x 110 -y 50 \
        "cd '$work' && env -u NO_COLOR HOME='$work/home' XDG_STATE_HOME='$work/state' TERM=xterm '$RLHF' chat --model m --db t.db; echo EXITED \$?; sleep 30"
    wait_for '^> ' 30 || bad "the prompt appears"
}

start
ok "session 1 started"
screen | grep -q 'loading m in the background' && ok "the prompt shows while the model loads" || bad "the prompt shows while the model loads"
# tab completion: a unique command completes, an ambiguous setting lists the choices
T send-keys -t chat '/sett' Tab
wait_for '^> /settings ' 5 && ok "Tab completes /sett to /settings" || bad "Tab completes /sett to /settings"
T send-keys -t chat Enter
wait_for '^truncate ' 30 && ok "/settings ran" || bad "/settings ran"
screen | grep -q '^loaded m: gpt2' && ok "the first input waited for the model" || bad "the first input waited for the model"
T send-keys -t chat '/set top_' Tab Tab
wait_for 'top_k +top_p' 5 && ok "Tab Tab lists top_k and top_p" || bad "Tab Tab lists top_k and top_p"
T send-keys -t chat 'p 0.9' Enter
wait_for '^top_p = 0.9' 5 && ok "completed setting set" || bad "completed setting set"
# a multi-line prompt: a trailing backslash continues the line
T send-keys -t chat '/prompt first line \' Enter
wait_for '^\.\.\. ' 5 || bad "continuation prompt"
T send-keys -t chat 'second line' Enter
wait_for '^second line$' 5 && screen | grep -B1 '^second line$' | grep -q '^first line' \
    && ok "backslash continues a prompt on the next line" || bad "backslash continues a prompt on the next line"
# a """ block is one prompt; /prompt then shows it
T send-keys -t chat '/set max_tokens 3' Enter '"""' Enter 'alpha beta' Enter 'gamma delta' Enter '"""' Enter
wait_for '-- 3 tokens' 20 || bad "the block prompt was answered"
T send-keys -t chat '/prompt' Enter
wait_for '^gamma delta$' 5 && screen | grep -B1 '^gamma delta$' | grep -q '^alpha beta' \
    && ok "a \"\"\" block is one multi-line prompt" || bad "a \"\"\" block is one multi-line prompt"
# Ctrl-C during a long generation stops it; the session survives
T send-keys -t chat '/set max_tokens 3000' Enter '/set ignore_eos on' Enter 'Once upon a time' Enter
sleep 1.5
T send-keys -t chat C-c
wait_for '-- [0-9]+ tokens .* interrupted' 20 && ok "Ctrl-C stops the generation (finish: interrupted)" \
    || bad "Ctrl-C stops the generation (finish: interrupted)"
n=$(screen | grep -Eo -- '-- [0-9]+ tokens .* interrupted' | grep -Eo '[0-9]+' | head -1)
[ -n "$n" ] && [ "$n" -lt 3000 ] && ok "interrupted after $n of 3000 tokens" || bad "interrupted before the end ($n)"
T send-keys -t chat '/set max_tokens 5' Enter 'The next prompt' Enter
wait_for '-- 5 tokens .* max_tokens' 20 && ok "the next prompt works after Ctrl-C" || bad "the next prompt works after Ctrl-C"
# Ctrl-C while typing clears the line, the session goes on
T send-keys -t chat 'half typed' C-c
sleep 0.3
T send-keys -t chat '/annotator' Enter
wait_for '^annotator: ' 5 && ok "Ctrl-C at the prompt clears the line" || bad "Ctrl-C at the prompt clears the line"
screen | grep -q 'EXITED' && bad "the session did not end on Ctrl-C"
# Ctrl-D ends it
T send-keys -t chat C-d
wait_for '^EXITED 0' 10 && ok "Ctrl-D ends the session (exit 0)" || bad "Ctrl-D ends the session (exit 0)"
[ -s "$work/state/rlhf/history" ] && ok "history file written" || bad "history file written"
T kill-session -t chat

# history across sessions: Up recalls the previous session's last line
start
T send-keys -t chat Up
wait_for '^> /annotator' 5 && ok "Up recalls the previous session's last input" || bad "Up recalls the previous session's last input"
T send-keys -t chat Up
wait_for '^> The next prompt' 5 && ok "older history is there too" || bad "older history is there too"
T send-keys -t chat C-u '/set max_tokens 3' Enter '/set temperature 1' Enter 'hi' Enter '/candidates 2' Enter
wait_for 'one batched pass' 20 || bad "candidates drawn"
T send-keys -t chat 'A > B' Enter
wait_for '^saved ranking' 10 || bad "ranking saved"
T send-keys -t chat '/model use ' Tab
wait_for '^> /model use m $' 5 && ok "Tab completes a model name from the registry" || bad "Tab completes a model name from the registry"
T send-keys -t chat C-u C-d
wait_for '^EXITED 0' 10 || bad "second session ends"

[ $fails -eq 0 ] && echo "all tmux checks passed" || echo "$fails tmux checks failed"
[ $fails -eq 0 ]
