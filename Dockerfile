# The qp worker image: the static qp binary and a CA bundle, nothing else.
#
# Built by scripts/build-image from a prepared context (the repo root, filtered by
# .dockerignore): dist/qp from scripts/build-static and dist/ca-certificates.crt copied from the
# build host. Nothing is pulled (FROM scratch), so it builds offline and has no OS to patch.
#
# - The AWS SDK's TLS (rustls) loads the system trust roots; a scratch image has none, hence the
#   bundle at the path every loader probes, also named by SSL_CERT_FILE.
# - A numeric non-root user: there is no /etc/passwd to name one, and none is needed.
# - Read-only root filesystem: `qp work` keeps objects and outputs in memory and logs to
#   stderr; it never writes a file. The task definition sets readonlyRootFilesystem.
FROM scratch
COPY dist/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY dist/qp /qp
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/qp", "work"]
