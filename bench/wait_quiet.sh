# wait_quiet.sh — sourced by the bench runners: waits (up to 10 minutes) until the 1-minute load
# average is below $max_load, so a benchmark does not start on a busy machine, then prints it.
for _ in $(seq 60); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  awk -v l="$load" -v m="$max_load" 'BEGIN { exit !(l < m) }' && break
  echo "waiting for the machine to go quiet (load $load >= $max_load)..." >&2
  sleep 10
done
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
