#!/usr/bin/env bash
# Creates hotspot-dwell's topics with their retention (deploy/README.md,
# "What data is kept where"). Idempotent: existing topics are altered.
set -euo pipefail
KT=/opt/kafka/bin/kafka-topics.sh
KC=/opt/kafka/bin/kafka-configs.sh
DAY_MS=86400000

topic() {  # name, retention.ms, cleanup.policy
    $KT --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$1" \
        --partitions "$PARTITIONS" --replication-factor 1 \
        --config retention.ms="$2" --config cleanup.policy="$3"
    $KC --bootstrap-server "$BOOTSTRAP" --alter --entity-type topics --entity-name "$1" \
        --add-config retention.ms="$2",cleanup.policy="$3"
}

# Officers' raw locations: personal data, kept only as long as a replay after
# an outage could need them.
topic location-fixes $((7 * DAY_MS)) delete
topic location-fixes-dead-letter $((7 * DAY_MS)) delete
# Internal topics are named after the app id (hotspot-dwell in the compose file).
topic hotspot-dwell-visit-batches $((2 * DAY_MS)) delete
# Stage 1's officer state: only the latest snapshot per partition matters.
topic hotspot-dwell-officer-checkpoints $((7 * DAY_MS)) compact
# Stage 2's hot spot-day state: likewise.
topic hotspot-dwell-presence-checkpoints $((7 * DAY_MS)) compact
# Visits and patrol events name officers: the evaluation period plus a margin.
topic dwell-intervals $((90 * DAY_MS)) delete
topic patrol-events $((400 * DAY_MS)) delete
