# Multi-stage build of the `harness` binary; tested by docker/test.sh (which
# `.ci/run` calls): build, a one-model run, and the compose topology.

# --- builder: dependencies first, so source edits reuse the cached layer ---
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY workloads/Cargo.toml workloads/
COPY common/Cargo.toml common/
COPY models/Cargo.toml models/
COPY fleet/Cargo.toml fleet/
COPY record/Cargo.toml record/
COPY search/Cargo.toml search/
COPY report/Cargo.toml report/
COPY harness/Cargo.toml harness/build.rs harness/
RUN for c in workloads common models fleet record search report harness; do \
      mkdir -p $c/src && echo '' > $c/src/lib.rs; done \
 && mkdir -p harness/benches && echo 'fn main() {}' > harness/src/main.rs \
 && echo 'fn main() {}' > harness/benches/hot_paths.rs \
 && cargo build --release -p harness \
 && rm -rf workloads/src common/src models/src fleet/src record/src search/src report/src harness/src
COPY workloads workloads
COPY common common
COPY models models
COPY fleet fleet
COPY record record
COPY search search
COPY report report
COPY harness harness
RUN touch workloads/src/lib.rs common/src/lib.rs models/src/lib.rs fleet/src/lib.rs \
      record/src/lib.rs search/src/lib.rs report/src/lib.rs \
      harness/src/lib.rs harness/src/main.rs \
 && cargo build --release -p harness

# --- runtime: the binary and an entry point that drops to the owner of the
# results folder (docker/entrypoint.sh); no VOLUME, so no anonymous volumes ---
FROM debian:bookworm-slim
RUN useradd --create-home --uid 10001 bench
COPY --from=builder /src/target/release/harness /usr/local/bin/harness
COPY docker/entrypoint.sh /usr/local/bin/harness-entrypoint
WORKDIR /work
# The entry point may run as any uid (a mounted results folder's owner):
# plots and logs left in the image must take its files too.
RUN mkdir -p results plots logs && chown -R bench:bench /work && chmod 1777 plots logs
ENTRYPOINT ["harness-entrypoint"]
CMD ["--all", "--quick"]
