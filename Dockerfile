# syntax=docker/dockerfile:1
# verdictd and the verdict CLI on Debian 12, CPU only (LibTorch from Debian, OpenBLAS).
#   docker build -t verdict:0.1.0 .
#   docker run -p 50051:50051 -p 9464:9464 -v verdict-state:/var/lib/verdict verdict:0.1.0
# The CUDA image is deploy/docker/Dockerfile.cuda. Kubernetes manifests: deploy/k8s.
# No HEALTHCHECK: Kubernetes probes grpc.health.v1 directly (deploy/k8s/base).

# ---- build ----------------------------------------------------------------------------------
FROM debian:bookworm AS build

# The same script sets up a developer machine: one list of packages.
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The tree has no install() rules yet, so the binaries and the sentencepiece module are
# picked out of the build tree; the module goes where the loader looks: <bin>/../lib/verdict.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DVERDICT_BUILD_TESTS=OFF \
 && cmake --build build --target verdictd verdict verdict-train \
 && mkdir -p /opt/verdict/bin /opt/verdict/lib/verdict \
 && find build -type f \( -name verdictd -o -name verdict -o -name verdict-train \) -perm -u+x \
      -exec install -m 0755 -s {} /opt/verdict/bin/ \; \
 && find build -type f -name libverdict_sentencepiece.so \
      -exec install -m 0644 -s {} /opt/verdict/lib/verdict/ \; \
 && test -x /opt/verdict/bin/verdictd \
 && test -x /opt/verdict/bin/verdict \
 && test -x /opt/verdict/bin/verdict-train \
 && test -f /opt/verdict/lib/verdict/libverdict_sentencepiece.so

# ---- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# Runtime libraries only: the packages the -dev packages of scripts/install-deps.sh depend on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libgrpc++1.51 \
      libopenblas0-pthread \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libsentencepiece0 \
      libsqlite3-0 \
      libssl3 \
      libtorch1.13 \
      libutf8proc2 \
      libyaml-cpp0.7 \
      zlib1g \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/verdict /opt/verdict
# Fail the build, not the first start, if a shared library is missing.
RUN if ldd /opt/verdict/bin/verdictd /opt/verdict/bin/verdict /opt/verdict/bin/verdict-train \
         /opt/verdict/lib/verdict/libverdict_sentencepiece.so | grep "not found"; then \
      echo "runtime stage lacks the libraries above" >&2; exit 1; \
    fi

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 verdict \
 && useradd --system --uid 10001 --gid verdict --home-dir /var/lib/verdict --no-create-home \
      --shell /usr/sbin/nologin verdict \
 && mkdir -p /var/lib/verdict \
 && chown verdict:verdict /var/lib/verdict

ENV PATH=/opt/verdict/bin:$PATH
USER 10001:10001
WORKDIR /var/lib/verdict
VOLUME ["/var/lib/verdict"]
# gRPC, Prometheus metrics.
EXPOSE 50051 9464
ENTRYPOINT ["/opt/verdict/bin/verdictd"]
# Defaults for a container; Kubernetes replaces them with --flagfile (deploy/k8s).
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9464", \
     "--state_dir=/var/lib/verdict", "--data_dir=/var/lib/verdict/data", \
     "--model_dir=/var/lib/verdict/models"]
