# Breaks one rule of check_dockerfiles.py per line or so; checkers_test.py expects each one.
FROM ubuntu
FROM debian:latest AS build
ADD . /src
WORKDIR src
RUN cd /src && sudo apt-get update && apt-get install curl
RUN apt-get upgrade
RUN if [ -f x ]; then echo yes;
COPY --from=nowhere /a /b
COPY does-not-exist /x
COPY .git /x
RUN echo $unquoted_lowercase_never_set
HEALTHCHECK CMD true
EXPOSE 8080
ENTRYPOINT verdictd
RUN apt-get install -y --no-install-recommends libverdict-no-such-package \
 && rm -rf /var/lib/apt/lists/*
