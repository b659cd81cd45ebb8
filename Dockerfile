# The inetsvc images, built from source: one builder stage, then one `scratch` image per
# binary (targets echod, daytimed, timed, inetsvc). What deploy/docker-compose.yml builds by
# default; works with the classic builder (docker-compose 1.29, DOCKER_BUILDKIT=0) and
# with BuildKit, on amd64 and arm64 hosts alike.
#
#   docker build --target echod -t inetsvc/echod .
#
# With no registry, Dockerfile.prebuilt packs binaries built on the host instead
# (scripts/build-static); scripts/dockerfile-prebuilt writes it from this file, whose image
# stages it shares (docs/architecture.md, "Images").
#
# Every image: one static binary, no shell, numeric non-root user, the binary's own
# `healthcheck` subcommand as HEALTHCHECK, OCI labels filled in at build time.

# The builder: an exact release (docs/versions.md), the toolchain the project is tested
# with, written in the builder's FROM line below. --build-arg RUST_IMAGE=… takes a digest
# (rust:1.95.0-trixie@sha256:…) or a mirror's copy instead. Every argument here may come
# empty (docker-compose 1.29 passes an unset variable as ""): empty means the default.
ARG RUST_IMAGE
# The OCI labels' facts, given at build time (the compose file takes them from the shell,
# the release workflow sets them): --build-arg REVISION=$(git rev-parse HEAD)
# --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ARG VERSION=0.1.0
ARG REVISION
ARG CREATED
ARG SOURCE=https://github.com/inetsvc/inetsvc

# ---- builder (from source) ----

FROM ${RUST_IMAGE:-rust:1.95.0-trixie} AS builder
# cargo-auditable embeds each binary's dependency list (crates and versions) in a section of
# its own, so that `cargo audit bin` and image scanners can read what a scratch image holds.
# Its own layer: kept across every source change.
ARG CARGO_AUDITABLE_VERSION=0.7.2
RUN command -v cargo-auditable >/dev/null \
    || cargo install --locked --version "${CARGO_AUDITABLE_VERSION}" cargo-auditable
WORKDIR /src
# Static glibc; scratch has no /dev/urandom, so getrandom must use the syscall.
ENV RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
# The cargo profile: `release` (fat LTO, the smallest binaries) unless CARGO_PROFILE=quick
# asks for the same options without LTO, for a fast local loop (Cargo.toml).
ARG CARGO_PROFILE
# Dependencies in their own layer: the workspace's manifests (every member's, as cargo
# loads the whole workspace; deploy/test/conventions checks this list against
# Cargo.toml) and empty sources, built once; a source change starts after this layer.
COPY Cargo.toml Cargo.lock ./
COPY proto/Cargo.toml proto/
COPY shared/Cargo.toml shared/
COPY services/echo/Cargo.toml services/echo/
COPY services/daytime/Cargo.toml services/daytime/
COPY services/time/Cargo.toml services/time/
COPY cli/Cargo.toml cli/
COPY testkit/Cargo.toml testkit/
COPY bench/baseline/Cargo.toml bench/baseline/
# The builder's own target, found at build time (never written here), so that the same file
# builds amd64 images on amd64 and arm64 images on arm64; --target keeps crt-static off the
# build scripts and proc macros.
RUN target=$(rustc -vV | sed -n 's/^host: //p') profile=${CARGO_PROFILE:-release} \
    && for manifest in */Cargo.toml */*/Cargo.toml; do \
         crate=$(dirname "$manifest") && mkdir -p "$crate/src" && : > "$crate/src/lib.rs" \
         && if grep -q '^path = "src/main.rs"' "$manifest"; then echo 'fn main() {}' > "$crate/src/main.rs"; fi \
         || exit 1; \
       done \
    && cargo auditable build --profile "$profile" --locked --target "$target" \
        -p inetsvc-echo -p inetsvc-daytime -p inetsvc-time -p inetsvc-cli
COPY . .
# The sources keep their own times through COPY, which can be older than the empty ones
# built above: touch them, so cargo rebuilds the workspace's crates (and only those).
ARG REVISION
RUN target=$(rustc -vV | sed -n 's/^host: //p') profile=${CARGO_PROFILE:-release} \
    && find . -name '*.rs' -not -path './target/*' -exec touch {} + \
    && INETSVC_REVISION="${REVISION:-unknown}" cargo auditable build --profile "$profile" --locked --target "$target" \
        -p inetsvc-echo -p inetsvc-daytime -p inetsvc-time -p inetsvc-cli \
    && mkdir /dist \
    && for binary in echod daytimed timed inetsvc; do \
         cp "target/$target/$profile/$binary" /dist/ || exit 1; \
       done

# ---- images (Dockerfile.prebuilt has this part word for word) ----

# What every image shares: the OCI labels that are facts of the build, and the user.
FROM scratch AS base
ARG VERSION
ARG REVISION
ARG CREATED
ARG SOURCE
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION:-unknown}" \
      org.opencontainers.image.created="${CREATED:-unknown}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
USER 65532:65532

FROM base AS echod
LABEL org.opencontainers.image.title="inetsvc echod" \
      org.opencontainers.image.description="ECHO service (RFC 862) over TCP and UDP"
COPY --from=builder /dist/echod /echod
EXPOSE 7/tcp 7/udp 9007/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/echod", "healthcheck"]
ENTRYPOINT ["/echod"]

FROM base AS daytimed
LABEL org.opencontainers.image.title="inetsvc daytimed" \
      org.opencontainers.image.description="DAYTIME service (RFC 867) over TCP and UDP"
COPY --from=builder /dist/daytimed /daytimed
EXPOSE 13/tcp 13/udp 9013/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/daytimed", "healthcheck"]
ENTRYPOINT ["/daytimed"]

FROM base AS timed
LABEL org.opencontainers.image.title="inetsvc timed" \
      org.opencontainers.image.description="TIME service (RFC 868) over TCP and UDP"
COPY --from=builder /dist/timed /timed
EXPOSE 37/tcp 37/udp 9037/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/timed", "healthcheck"]
ENTRYPOINT ["/timed"]

# The inetsvc command: the compose stack's prober (`inetsvc probe --listen`), and the
# training profile's trainer and client traffic.
FROM base AS inetsvc
LABEL org.opencontainers.image.title="inetsvc" \
      org.opencontainers.image.description="ECHO, DAYTIME and TIME clients, prober, load generator, fault-injection client"
COPY --from=builder /dist/inetsvc /inetsvc
EXPOSE 9100/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=2s --retries=3 CMD ["/inetsvc", "healthcheck"]
ENTRYPOINT ["/inetsvc"]
