# Multi-stage build of the `harness` binary. Untested on the project's build
# machines (they run no Docker engine); kept simple enough to review by eye.

# --- builder: dependencies first, so source edits reuse the cached layer ---
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY workloads/Cargo.toml workloads/
COPY models/Cargo.toml models/
COPY harness/Cargo.toml harness/build.rs harness/
RUN mkdir -p workloads/src models/src harness/src harness/benches \
 && echo '' > workloads/src/lib.rs && echo '' > models/src/lib.rs \
 && echo '' > harness/src/lib.rs && echo 'fn main() {}' > harness/src/main.rs \
 && echo 'fn main() {}' > harness/benches/hot_paths.rs \
 && cargo build --release -p harness \
 && rm -rf workloads/src models/src harness/src
COPY workloads workloads
COPY models models
COPY harness harness
RUN touch workloads/src/lib.rs models/src/lib.rs harness/src/lib.rs harness/src/main.rs \
 && cargo build --release -p harness

# --- runtime: the binary alone, as a non-root user ---
FROM debian:bookworm-slim
RUN useradd --create-home --uid 10001 bench
COPY --from=builder /src/target/release/harness /usr/local/bin/harness
WORKDIR /work
RUN mkdir -p results plots logs && chown -R bench:bench /work
USER bench
VOLUME ["/work/results", "/work/plots", "/work/logs"]
ENTRYPOINT ["harness"]
CMD ["--all", "--quick"]
