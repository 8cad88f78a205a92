#!/bin/sh
# Prints on stdout, then execs the program given: for probe-cli's tests of
# output that must never mix with the traced program's stdout, and of a start
# script that execs the real program.
echo "chatty: starting $1"
exec "$@"
