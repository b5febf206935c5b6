# One image with every binary: receiver, worker, leadctl, migrations.
#   docker build -t lead-intake .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cp target/release/receiver target/release/worker target/release/leadctl target/release/migrations /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 app
COPY --from=build /out/ /usr/local/bin/
USER app
ENV LOG_FORMAT=json RECEIVER_ADDR=0.0.0.0:8080 WORKER_METRICS_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
CMD ["receiver"]
