# One Dockerfile, a stage per service, two ways to build:
#
# Offline (the default targets: echod, daytimed, timed, inetsvc): pack static binaries built on the
# host into `scratch`. Build them with `scripts/build-static`, which puts them in dist/.
# These stages come first, so that the classic builder, which builds every stage up to
# the target, never needs the Rust image.
#
#   scripts/build-static && docker build --target echod -t inetsvc/echod .
#
# From source, for a machine with access to a registry (targets *-from-source):
#
#   docker build --target echod-from-source -t inetsvc/echod .
#
# Every image: one static binary, no shell, numeric non-root user, the binary's own
# `healthcheck` subcommand as HEALTHCHECK, OCI labels.

ARG VERSION=0.1.0
# The builder of the *-from-source targets: an exact release (docs/versions.md), the
# toolchain the project is tested with. --build-arg RUST_IMAGE=… takes a digest or a
# mirror's copy instead.
ARG RUST_IMAGE=rust:1.95.0-trixie

# ---- what every image of a service is, whichever way its binary was built ----

FROM scratch AS echod-base
ARG VERSION
LABEL org.opencontainers.image.title="inetsvc echod" \
      org.opencontainers.image.description="ECHO service (RFC 862) over TCP and UDP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
USER 65532:65532
EXPOSE 7/tcp 7/udp 9007/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/echod", "healthcheck"]
ENTRYPOINT ["/echod"]

FROM scratch AS daytimed-base
ARG VERSION
LABEL org.opencontainers.image.title="inetsvc daytimed" \
      org.opencontainers.image.description="DAYTIME service (RFC 867) over TCP and UDP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
USER 65532:65532
EXPOSE 13/tcp 13/udp 9013/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/daytimed", "healthcheck"]
ENTRYPOINT ["/daytimed"]

FROM scratch AS timed-base
ARG VERSION
LABEL org.opencontainers.image.title="inetsvc timed" \
      org.opencontainers.image.description="TIME service (RFC 868) over TCP and UDP" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
USER 65532:65532
EXPOSE 37/tcp 37/udp 9037/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=3 CMD ["/timed", "healthcheck"]
ENTRYPOINT ["/timed"]

# The inetsvc command: the compose stack's prober (`inetsvc probe --listen`), and the
# training profile's trainer and client traffic.
FROM scratch AS inetsvc-base
ARG VERSION
LABEL org.opencontainers.image.title="inetsvc" \
      org.opencontainers.image.description="ECHO, DAYTIME and TIME clients, prober, load generator, fault-injection client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
USER 65532:65532
EXPOSE 9100/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=2s --retries=3 CMD ["/inetsvc", "healthcheck"]
ENTRYPOINT ["/inetsvc"]

# ---- offline: static binaries built on the host (scripts/build-static) ----

FROM echod-base AS echod
COPY dist/echod /echod

FROM daytimed-base AS daytimed
COPY dist/daytimed /daytimed

FROM timed-base AS timed
COPY dist/timed /timed

FROM inetsvc-base AS inetsvc
COPY dist/inetsvc /inetsvc

# ---- from source (needs the Rust image from a registry) ----

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# Static glibc; scratch has no /dev/urandom, so getrandom must use the syscall.
ENV RUSTFLAGS="-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
# The builder's own target, found at build time (never written here), so that the same
# file builds amd64 images on amd64 and arm64 images on arm64; --target keeps crt-static
# off the build scripts and proc macros.
RUN target=$(rustc -vV | sed -n 's/^host: //p') \
    && cargo build --release --locked --target "$target" \
        -p inetsvc-echo -p inetsvc-daytime -p inetsvc-time -p inetsvc-cli \
    && mkdir /dist \
    && for binary in echod daytimed timed inetsvc; do \
         cp "target/$target/release/$binary" /dist/ || exit 1; \
       done

FROM echod-base AS echod-from-source
COPY --from=builder /dist/echod /echod

FROM daytimed-base AS daytimed-from-source
COPY --from=builder /dist/daytimed /daytimed

FROM timed-base AS timed-from-source
COPY --from=builder /dist/timed /timed

FROM inetsvc-base AS inetsvc-from-source
COPY --from=builder /dist/inetsvc /inetsvc
