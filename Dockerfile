# syntax=docker/dockerfile:1
#
# One image holding every binary of the workspace, for the distributed mode (docker-compose.yml, DESIGN §1):
# accounts-api, sanctions-api, payment-scheme-domain, scheme-simulator, data-seeder, bank, eventstore-lite.
# Each compose service picks its binary with `command:`; there is no ENTRYPOINT.
#
#   docker build -t uk-bank:local .
#   docker run --rm uk-bank:local accounts-api --help

# --- build ---------------------------------------------------------------------------------------------------
# `rust:1-slim-bookworm`, not plain `rust:1-slim`: the slim tag follows Debian's newest release, and a binary
# linked against a newer glibc than the runtime stage's (bookworm) refuses to start. The slim image already has
# the C toolchain the build scripts need (gcc for ring, aws-lc-sys and QuickJS); protobuf is compiled with protox,
# so no system protoc is needed.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit caches, so a rebuild after a source change recompiles only the
# workspace crates. The cache is not part of the image, hence the copy to /out inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && for bin in accounts-api sanctions-api payment-scheme-domain scheme-simulator data-seeder bank eventstore-lite; do \
         cp "target/release/${bin}" /out/ || exit 1; \
       done

# --- runtime -------------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to anything with a public certificate (the cluster's own CA is given per connection with
# `tlsCaFile`). curl: the compose health checks probe `/health/live` with it, as KurrentDB's own image does.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# An unprivileged user. uid 1000 matches the owner of the certificates that es-gencert-cli writes in
# docker-compose.yml (it runs as 1000:1000), so the CA certificate is readable without opening its permissions.
RUN groupadd --gid 1000 bank \
    && useradd --uid 1000 --gid bank --home-dir /var/lib/bank --no-create-home --shell /usr/sbin/nologin bank \
    && mkdir -p /var/lib/bank \
    && chown bank:bank /var/lib/bank
COPY --from=build /out/ /usr/local/bin/
# The services keep their read models under ./data/<service> by default, i.e. /var/lib/bank/data/<service>.
WORKDIR /var/lib/bank
USER bank
# sanctions-api, accounts-api, payment-scheme-domain, scheme-simulator, eventstore-lite (DESIGN §5).
EXPOSE 5000 5002 5004 5006 2113
CMD ["bank", "--help"]
