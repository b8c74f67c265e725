#!/bin/sh
# Click events like `kappa demo`'s generator (crates/kappa/src/generator.rs), one JSON object a
# line on stdout: {"user_id":"user_17","item_id":"item_523","timestamp":<epoch ms>} from 100
# users and 1000 items, event time running SPEED times faster than the wall clock (600: an
# hourly window closes every six seconds) and lagging it by up to 5 s at random.
# `kappa demo` only writes to its own embedded Kafka, so docker-compose.yml pipes this into
# kafka-console-producer.sh. POSIX sh and awk only (busybox awk in the apache/kafka image).
#
#   RATE=2000 SPEED=600 sh deploy/click-generator.sh | head
set -eu
RATE=${RATE:-2000}      # events per second of wall time
SPEED=${SPEED:-600}     # event-time speed-up
USERS=${USERS:-100}
ITEMS=${ITEMS:-1000}
JITTER_MS=${JITTER_MS:-5000}
TICKS=${TICKS:-0}       # stop after this many seconds (0: never)

exec awk -v rate="$RATE" -v speed="$SPEED" -v users="$USERS" -v items="$ITEMS" \
  -v jitter="$JITTER_MS" -v ticks="$TICKS" -v now="$(date +%s)" '
BEGIN {
  srand()
  hour = 3600000
  # Start just after the top of an hour so the first window is a whole one.
  start = int(now * 1000 / hour) * hour + 10000
  step = 1000 * speed / rate            # event-time ms between two events
  for (tick = 0; ticks == 0 || tick < ticks; tick++) {
    base = start + tick * 1000 * speed
    for (i = 0; i < rate; i++) {
      ts = base + i * step - int(rand() * (jitter + 1))
      printf "{\"user_id\":\"user_%d\",\"item_id\":\"item_%d\",\"timestamp\":%.0f}\n", \
        1 + int(rand() * users), 1 + int(rand() * items), ts
    }
    fflush()
    system("sleep 1")
  }
}'
