#!/usr/bin/env bash
# Creates hotspot-dwell's topics with their retention (deploy/README.md,
# "What data is kept where"). Idempotent: existing topics are altered.
# location-fixes gets $PARTITIONS partitions if it does not exist yet; every
# other topic is created with the count location-fixes has (an existing one's,
# say 8 from a platform team), and an internal topic with another count stops
# the script, as it would stop the worker.
set -euo pipefail
KAFKA_BIN=${KAFKA_BIN:-/opt/kafka/bin}
KT=$KAFKA_BIN/kafka-topics.sh
KC=$KAFKA_BIN/kafka-configs.sh
DAY_MS=86400000

partitions_of() {  # name
    $KT --bootstrap-server "$BOOTSTRAP" --describe --topic "$1" |
        sed -n 's/.*PartitionCount: *\([0-9][0-9]*\).*/\1/p'
}

topic() {  # name, retention.ms, cleanup.policy, [internal]
    $KT --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$1" \
        --partitions "$PARTITIONS" --replication-factor 1 \
        --config retention.ms="$2" --config cleanup.policy="$3"
    $KC --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics --entity-name "$1" \
        --add-config retention.ms="$2",cleanup.policy="$3"
    if [ "${4:-}" = internal ]; then
        local n
        n=$(partitions_of "$1")
        if [ "$n" != "$PARTITIONS" ]; then
            echo "topics.sh: $1 has $n partitions but location-fixes has $PARTITIONS: the worker will not" \
                 "start. Delete the app's internal topics (hotspot-dwell-officer-checkpoints," \
                 "hotspot-dwell-visit-batches, hotspot-dwell-presence-checkpoints) and run this again." >&2
            exit 1
        fi
    fi
}

# Officers' raw locations: personal data, kept only as long as a replay after
# an outage could need them.
topic location-fixes $((7 * DAY_MS)) delete
# Everything else with the input's partition count, which the worker requires
# of its internal topics (as Kafka Streams does of its changelogs).
PARTITIONS=$(partitions_of location-fixes)
if [ -z "$PARTITIONS" ]; then
    echo "topics.sh: cannot read the partition count of location-fixes" >&2
    exit 1
fi
topic location-fixes-dead-letter $((7 * DAY_MS)) delete
# Internal topics are named after the app id (hotspot-dwell in the compose file).
topic hotspot-dwell-visit-batches $((2 * DAY_MS)) delete internal
# Stage 1's officer state: only the latest snapshot per partition matters.
topic hotspot-dwell-officer-checkpoints $((7 * DAY_MS)) compact internal
# Stage 2's hot spot-day state: likewise.
topic hotspot-dwell-presence-checkpoints $((7 * DAY_MS)) compact internal
# Visits and patrol events name officers: the evaluation period plus a margin.
topic dwell-intervals $((90 * DAY_MS)) delete
topic patrol-events $((400 * DAY_MS)) delete
