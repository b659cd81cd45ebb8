# shellcheck shell=bash
# Sourced by scripts/offline-stack and scripts/training (from the checkout's root): the one
# place that picks the compose command and says what the offline variant of the stack is.

# `docker compose` (v2 and later) where it is installed, else Debian's docker-compose 1.29.
if docker compose version >/dev/null 2>&1; then compose_argv=(docker compose); else compose_argv=(docker-compose); fi

# The compose command; the arguments are the compose file options, then the command.
compose_with() {
  "${compose_argv[@]}" "$@"
}

# The offline stack's services: Grafana and Jaeger need their images from a registry.
# shellcheck disable=SC2034  # used by the scripts that source this file
offline_services=(echod daytimed timed prober prometheus)

# Offline: images packed from host-built binaries (Dockerfile.prebuilt), Prometheus packed
# from Debian's package, trace export off (no trace backend in the stack).
offline_environment() {
  export INETSVC_DOCKERFILE=Dockerfile.prebuilt OTEL_EXPORTER_OTLP_ENDPOINT=""
  export PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-inetsvc-local/prometheus:debian}"
}

# What the offline images need before compose builds them.
offline_prepare() {
  command -v prometheus >/dev/null \
    || { echo "offline: needs Debian's prometheus package (apt-get install prometheus)" >&2; exit 1; }
  bash scripts/build-static >/dev/null
  bash deploy/test/prometheus-image "$PROMETHEUS_IMAGE" >/dev/null
}
