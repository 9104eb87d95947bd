# Stand-in for `rust:1-slim-bookworm` where no image registry is reachable:
# built by docker/test.sh from the debootstrapped `debian:bookworm-slim`
# stand-in and Debian's bookworm-security `rustc-web`/`cargo-web` (Debian's
# plain `rustc` is older than the project's rust-version). Like the real
# image it has cargo on PATH and a C linker.
FROM debian:bookworm-slim
ARG SECURITY_MIRROR
COPY certs/ /usr/local/share/ca-certificates/
RUN echo "deb ${SECURITY_MIRROR} bookworm-security main" > /etc/apt/sources.list.d/security.list \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      rustc-web cargo-web gcc libc6-dev ca-certificates \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
