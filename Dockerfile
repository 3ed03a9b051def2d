# syntax=docker/dockerfile:1
# The credits image: a release build of the `credits` binary on distroless (glibc, CA roots, no
# shell, user nonroot 65532). Build and run:
#
#   docker build -t credits:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8080:8080 -e DATABASE_URL=postgres://… credits:0.1.0
#
# The Helm chart (helm/credits) runs it with a read-only root filesystem and /tmp as an emptyDir.

# ---- build ---------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src

# Everything the build reads (the rest is kept out by .dockerignore). protobufs compile with
# protox, SQLite is bundled and TLS is rustls, so no system packages are needed.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
COPY tests tests

# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin credits \
    && install -D -m 0755 target/release/credits /out/credits

# ---- runtime -------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/credits /usr/local/bin/credits
COPY packs.toml /etc/credits/packs.toml

# The chart mounts its ConfigMap over /etc/credits; without the chart the image's copy is used.
ENV CREDIT_PACKS_FILE=/etc/credits/packs.toml
# A writable working directory for the embedded SQLite default (credits.db) when run by hand.
WORKDIR /home/nonroot
# Numeric, so Kubernetes can verify runAsNonRoot without a runAsUser.
USER 65532:65532

# gRPC (GRPC_ADDR) and HTTP (HTTP_ADDR: Stripe webhook, /healthz, /readyz).
EXPOSE 50051 8080

ENTRYPOINT ["/usr/local/bin/credits"]
CMD ["serve"]
