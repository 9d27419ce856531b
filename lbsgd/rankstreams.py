"""Demultiplex a Horovod job's console: rank 0's output untagged, the other ranks' kept aside.

horovodrun runs Open MPI's `mpirun --tag-output`, which starts every chunk a
rank writes (and every line within it) with `[1,<rank>]<stdout>:` or
`[1,<rank>]<stderr>:`; with `--gloo` Horovod prefixes lines with
`[<rank>]<stdout>:`. A chunk need not end a line: `print()` writes its text
and its newline separately, so a tag can land in the middle of a line
(`... run directory runs/x[1,0]<stdout>:` + newline).

:class:`RankDemux` undoes this on a byte stream: text of rank 0 and text
without a tag (horovodrun's and mpirun's own messages) is passed on with the
tags removed, exactly as rank 0 wrote it (partial lines and `\\r` redraws
included); the other ranks' text, tags kept, goes to a side file that the
launcher prints only when the job fails. The launcher (`lbsgd.launcher.job`)
runs one per stream in-process; as a filter of its own:

    python -m lbsgd.rankstreams OTHERS_FILE < tagged > untagged

No TensorFlow import: it starts in milliseconds.
"""

from __future__ import annotations

import os
import re
import sys

# mpirun --tag-output: [jobid,rank]<stream>:   horovod gloo: [rank]<stream>:
TAG = re.compile(rb"\[(?:\d+,)?(\d+)\]<(?:stdout|stderr)>:")
# A tail that may still grow into a tag once the next chunk arrives.
PARTIAL_TAG = re.compile(rb"\[[\d,]*(?:\](?:<[a-z]*>?)?)?\Z")


# TensorFlow >= 2.19 logs its start-up INFO lines through absl before it reads
# TF_CPP_MIN_LOG_LEVEL (tensorflow#100442): absl's preamble and `I<mmdd> ...] ` lines.
# horovodrun itself imports TensorFlow, so its own (untagged) output carries them too.
ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called"
ABSL_INFO = re.compile(rb"I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] ")


def is_start_up_info(line: bytes) -> bool:
    """Whether `line` is one of TensorFlow's absl start-up INFO lines (or their preamble)."""
    return line.startswith(ABSL_PREAMBLE) or bool(ABSL_INFO.match(line))


def quiet_start_up(env) -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL in `env` asks INFO lines to be dropped (>= 1)."""
    level = env.get("TF_CPP_MIN_LOG_LEVEL", "0")
    return level.isdigit() and int(level) >= 1


class StartUpFilter:
    """Drops TensorFlow's start-up INFO lines from a byte stream, passing the rest on.

    A line that might still become one is held until its end; any other text
    passes at once (partial lines and redraws included).
    """

    def __init__(self):
        self._held = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        data, out = self._held + data, []
        self._held = b""
        while data:
            end = data.find(b"\n")
            if end < 0:
                maybe = data[:1] in (b"W", b"I") and len(data) < 256
                if maybe and not final:
                    self._held = data
                elif not is_start_up_info(data):
                    out.append(data)
                break
            line, data = data[:end + 1], data[end + 1:]
            if not is_start_up_info(line):
                out.append(line)
        return b"".join(out)


class RankDemux:
    """Splits tagged console bytes by rank (pure: feed bytes in, get (shown, others) out).

    Text belongs to the rank of the tag before it until the end of its line;
    text after a newline without a tag belongs to no rank (the launcher's
    own messages) and is shown. The other ranks' text comes out in whole
    lines, one tag each (a line a rank wrote in pieces is held until its
    end), so two filters appending to one file never split each other's lines.

    Args:
      shown_rank: the rank whose text is shown (untagged).
    """

    def __init__(self, shown_rank: int = 0):
        self.shown_rank = shown_rank
        self.rank = None          # rank of the text being read (None: untagged)
        self._pending = b""      # a possible tag split across chunks
        self._lines = {}         # other rank -> its unfinished kept line (with its tag)

    def feed(self, data: bytes, final: bool = False) -> tuple[bytes, bytes]:
        """(bytes to show, bytes of the other ranks with their tags) for the next chunk."""
        data = self._pending + data
        self._pending = b""
        if not final:
            partial = PARTIAL_TAG.search(data, max(0, len(data) - 24))
            if partial:
                self._pending = data[partial.start():]
                data = data[:partial.start()]
        shown, others = [], []
        pos = 0
        for match in TAG.finditer(data):
            self._route(data[pos:match.start()], shown, others)
            self.rank = int(match.group(1))
            if self.rank != self.shown_rank:
                self._lines.setdefault(self.rank, match.group(0))   # one tag per kept line
            pos = match.end()
        self._route(data[pos:], shown, others)
        if final:   # unfinished lines of other ranks, ended
            others += [line + b"\n" for line in self._lines.values()]
            self._lines.clear()
        return b"".join(shown), b"".join(others)

    def _route(self, text: bytes, shown: list, others: list) -> None:
        while text:
            end = text.find(b"\n")
            piece, text = (text, b"") if end < 0 else (text[:end + 1], text[end + 1:])
            if self.rank is None or self.rank == self.shown_rank:
                shown.append(piece)
            else:
                line = self._lines.get(self.rank, b"") + piece
                if end >= 0:
                    others.append(line)
                    self._lines.pop(self.rank, None)
                else:
                    self._lines[self.rank] = line
            if end >= 0:
                self.rank = None


def pump(in_fd: int, out_fd: int, keep_others, quiet: StartUpFilter | None = None) -> None:
    """Reads tagged bytes from `in_fd` to EOF: rank 0's and untagged text to `out_fd` (through
    `quiet` if given), the other ranks' lines to `keep_others(bytes)`."""
    demux = RankDemux()
    while True:
        try:
            chunk = os.read(in_fd, 65536)
        except InterruptedError:  # pragma: no cover - retried by Python anyway
            continue
        shown, others = demux.feed(chunk, final=not chunk)
        if quiet is not None:
            shown = quiet.feed(shown, final=not chunk)
        if others:
            keep_others(others)
        while shown:
            try:
                shown = shown[os.write(out_fd, shown):]
            except BrokenPipeError:
                shown = b""   # the reader went away: keep draining so the job never blocks
        if not chunk:
            return


def main(argv=None) -> int:
    """Filters stdin to stdout; other ranks' text is appended to the file argv[0] names."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m lbsgd.rankstreams OTHERS_FILE < tagged > untagged\n\n"
              + __doc__.split("\n")[0], file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    with open(argv[0], "ab", buffering=0) as side:
        pump(0, sys.stdout.fileno(), side.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
