#!/usr/bin/env bash
# Start dockerd in the background when no Docker daemon answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
echo "==> starting dockerd"
mkdir -p /var/log
nohup dockerd >/var/log/speculative-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not answer within 30 s; its log:" >&2
tail -n 30 /var/log/speculative-dockerd.log >&2
exit 1
