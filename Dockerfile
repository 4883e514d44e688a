# internlm.cpp on Debian bookworm-slim: a builder stage (scripts/setup.sh --run, the `internlm`
# target, `cmake --install`) and a runtime stage with the install prefix and the runtime
# libraries only. Not exercised by CI (no Docker on the CI machines).
#
# Build from the directory holding this repository (default name: main) and shared/ (the
# InternLM2 tokenizer of the built-in default model, installed into share/internlm):
#   docker build -t internlm.cpp -f main/Dockerfile --build-arg SRC=main \
#     --build-arg GIT_COMMIT="$(git -C main rev-parse --short HEAD)" .
#   docker run --rm -p 8000:8000 internlm.cpp                    # serve the built-in tiny model
#   docker run --rm -p 8000:8000 -v ~/internlm2_5-7b-chat:/model:ro internlm.cpp serve --model /model --host 0.0.0.0
#   docker run --rm internlm.cpp --version
ARG DEBIAN=bookworm-slim

FROM debian:${DEBIAN} AS builder
ARG SRC=main
ARG GIT_COMMIT=unknown
COPY ${SRC}/scripts/setup.sh /src/main/scripts/setup.sh
RUN /src/main/scripts/setup.sh --run && rm -rf /var/lib/apt/lists/*
COPY ${SRC}/ /src/main/
COPY shared/models/internlm2-tokenizer/ /src/shared/models/internlm2-tokenizer/
WORKDIR /src/main
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINTERNLM_BUILD_TESTS=OFF \
      -DINTERNLM_GIT_COMMIT="${GIT_COMMIT}" \
 && cmake --build /build --target internlm \
 && cmake --install /build --prefix /opt/internlm \
 && /opt/internlm/bin/internlm --version
# The runtime packages: the Depends that dpkg-shlibdeps computes for the .deb (CPack), without
# version constraints.
RUN cd /build && cpack -G DEB -B /build/deb \
 && dpkg-deb -f /build/deb/internlm_*.deb Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/ //g' \
    | grep . > /opt/runtime-packages.txt \
 && cat /opt/runtime-packages.txt

FROM debian:${DEBIAN}
COPY --from=builder /opt/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -qq \
 && xargs -a /tmp/runtime-packages.txt env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --create-home internlm
# bin/internlm finds its data in ../share/internlm.
COPY --from=builder /opt/internlm/ /usr/local/
USER internlm
WORKDIR /home/internlm
EXPOSE 8000
ENTRYPOINT ["internlm"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
