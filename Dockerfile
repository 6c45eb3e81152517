# syntax=docker/dockerfile:1
# The waxosuit image, built with Docker. scripts/build-image.sh builds the
# same image without Docker (umoci); both lay out the root file system with
# scripts/image-rootfs.sh, and crates/waxosuit-cli/tests/container_image.rs
# checks that the user, entrypoint, port and environment below match the
# script's.
#
#   docker build -t waxosuit:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/build:/actors:ro" -e WAXOSUIT_TRUSTED_ISSUERS=A… waxosuit:0.1.0 run /actors/hello_signed.wasm
#   (A…: the account that signed the actor, as `waxosuit claims inspect` shows it)

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p waxosuit-cli \
 && scripts/image-rootfs.sh /rootfs target/release/waxosuit

# Nothing but what image-rootfs.sh copied: the binary, its libraries from the
# build stage (same Debian release, same glibc), CA certificates, the user.
FROM scratch
COPY --from=build /rootfs/ /
# COPY resets ownership to root; the cache and home belong to the user.
COPY --from=build --chown=65532:65532 /rootfs/var/cache/waxosuit /var/cache/waxosuit
COPY --from=build --chown=65532:65532 /rootfs/home/waxosuit /home/waxosuit
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    WAXOSUIT_CACHE=/var/cache/waxosuit \
    WAXOSUIT_HTTP_ADDRESS=0.0.0.0 \
    PORT=8080
USER 65532:65532
EXPOSE 8080/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/waxosuit"]
LABEL org.opencontainers.image.title="waxosuit" \
      org.opencontainers.image.description="Host for signed WebAssembly actors" \
      org.opencontainers.image.licenses="Apache-2.0"
