#!/usr/bin/env bash
# The main job, from a fresh machine: install everything, build; then, first, the product's embedded sub-1-bit
# default (models/stories3M-littlebit-0.55.usk) next to the float model it was made from: both bit figures,
# the same prompt through both, and the perplexity of both on the same evaluation windows. Then the float model
# itself (generate, eval against llama2.c's figure), and a compression of it with a sub-1-bit codec (a short
# finetune included) evaluated against the float model.
#
#   bash scripts/main.sh                         # ../shared/models/stories3M, first 16 evaluation windows
#   bash scripts/main.sh --windows all           # every window of the evaluation text
#   bash scripts/main.sh --model path/to/model.bin [--tokenizer path/to/tokenizer.bin]
#
# Needs only Node.js >= 20.19 with npm; installs the pinned pnpm when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/setup.sh

DEFAULT_MODEL=../shared/models/stories3M
MODEL=$DEFAULT_MODEL
TOKENIZER=
TEXT=../shared/data/tinystories/eval.txt
WINDOWS=16
STEPS=256
PROMPT="Once upon a time"
SEED=42
INSTALL=1
# Sub-1-bit by default: LittleBit at 0.55 bits per weight with the quick recipe's settings, a 4-bit embedding
# (1.86 bits per parameter for the whole file) and a short finetune
# (60 steps; the committed default bundle had 6,000 of the long recipe, docs/results.md §11.2), so the whole job
# stays near 3 minutes.
COMPRESS="--codec littlebit --bpw 0.55 --recipe quick --finetune-steps 60 --embeddings rtn4 --threads 2"
DEFAULT_BUNDLE=models/stories3M-littlebit-0.55.usk
OUT=out

usage() {
  cat <<USAGE
Usage: bash scripts/main.sh [options]

Installs pnpm (if missing) and the dependencies, builds every package, then runs the main job. First the
embedded default ($DEFAULT_BUNDLE: stories3M below one bit per weight, made by the project's own
compress command, recorded in the bundle): its bit figures, text from it and from the float model on the same
prompt, and both perplexities on the same evaluation windows. Then the float model (generate, eval), and a
compression of it into a .usk bundle (default: sub-1-bit LittleBit with a short finetune), inspected, run,
and evaluated against the float model (perplexity, KL, top-1 on the same windows).

Options:
  --model PATH       llama2.c checkpoint, or a directory holding one (default: $DEFAULT_MODEL)
  --tokenizer FILE   its tokenizer (default: the tok*.bin / tokenizer.bin next to the checkpoint)
  --text FILE        evaluation text (default: $TEXT)
  --windows N|all    evaluate the first N windows, or all of them (default: $WINDOWS)
  --steps N          positions to generate (default: $STEPS)
  --prompt TEXT      prompt for generation (default: "$PROMPT")
  --seed S           sampling seed (default: $SEED)
  --compress ARGS    compress options, one quoted string (default: "$COMPRESS"), e.g.
                     --compress "--codec rtn --bits 4"; "none" skips compression
  --out DIR          where the bundle is written (default: $OUT)
  --no-install       skip pnpm install and the build (they are quick when nothing changed)
  -h, --help         show this help
USAGE
}

need_value() { [ $# -ge 2 ] || { printf 'error: %s needs a value\n' "$1" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --model) need_value "$@"; MODEL=$2; shift 2 ;;
    --tokenizer) need_value "$@"; TOKENIZER=$2; shift 2 ;;
    --text) need_value "$@"; TEXT=$2; shift 2 ;;
    --windows) need_value "$@"; WINDOWS=$2; shift 2 ;;
    --steps) need_value "$@"; STEPS=$2; shift 2 ;;
    --prompt) need_value "$@"; PROMPT=$2; shift 2 ;;
    --seed) need_value "$@"; SEED=$2; shift 2 ;;
    --compress) need_value "$@"; COMPRESS=$2; shift 2 ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) printf 'error: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
done

# Find the model before spending time on the install, and say exactly what to do when it is not there.
if [ ! -e "$MODEL" ]; then
  if [ "$MODEL" = "$DEFAULT_MODEL" ]; then
    die "the default model $DEFAULT_MODEL is not here (it comes with the project's shared data, next to this repository).
Pass a llama2.c checkpoint of your own with --model:
  bash scripts/main.sh --model path/to/model.bin [--tokenizer path/to/tokenizer.bin]"
  fi
  die "--model $MODEL: no such file or directory"
fi
CHECKPOINT=$MODEL
if [ -d "$MODEL" ]; then
  mapfile -t found < <(find "$MODEL" -maxdepth 1 -type f -name '*.bin' ! -name 'tok*.bin' ! -name 'tokenizer.bin' | sort)
  [ "${#found[@]}" -eq 1 ] || die "--model $MODEL: expected exactly one checkpoint (*.bin other than tok*.bin) in the directory, found ${#found[@]}; pass the file itself with --model"
  CHECKPOINT=${found[0]}
fi
[ -f "$TEXT" ] || die "the evaluation text $TEXT is not here; pass a text file (documents separated by blank lines) with --text FILE"

require_node
if [ "$INSTALL" = 1 ]; then
  ensure_pnpm
  install_and_build
elif [ ! -f apps/cli/dist/cli.js ]; then
  die "--no-install, but the CLI is not built (apps/cli/dist/cli.js); run without --no-install"
fi

TOK_ARGS=()
[ -z "$TOKENIZER" ] || TOK_ARGS=(--tokenizer "$TOKENIZER")
ultrasketch() {
  # The same as `pnpm -s ultrasketch ...` from the repository root.
  printf '\033[1m$ ultrasketch' >&2
  printf ' %q' "$@" >&2
  printf '\033[0m\n' >&2
  node apps/cli/dist/cli.js "$@"
}

# The embedded sub-1-bit default first (only with its own float model, stories3M).
if [ "$CHECKPOINT" = "$DEFAULT_MODEL/stories3M-q80.bin" ] && [ -f "$DEFAULT_BUNDLE" ]; then
  printf '\033[1m== The embedded default: %s ==\033[0m\n' "$DEFAULT_BUNDLE"
  ultrasketch inspect "$DEFAULT_BUNDLE" | sed -n '1,13p'
  echo
  echo "-- the same prompt, greedy, through the sub-1-bit bundle and through the float model:"
  ultrasketch generate "$DEFAULT_BUNDLE" --prompt "$PROMPT" --steps 96 --temperature 0
  ultrasketch generate "$CHECKPOINT" --prompt "$PROMPT" --steps 96 --temperature 0
  echo
  ultrasketch eval "$DEFAULT_BUNDLE" --text "$TEXT" --windows "$WINDOWS" --reference "$CHECKPOINT"
  echo
  printf '\033[1m== The float model ==\033[0m\n'
fi

ultrasketch inspect "$CHECKPOINT"
echo
ultrasketch generate "$CHECKPOINT" "${TOK_ARGS[@]}" --prompt "$PROMPT" --steps "$STEPS" --seed "$SEED"
echo
ultrasketch eval "$CHECKPOINT" "${TOK_ARGS[@]}" --text "$TEXT" --windows "$WINDOWS"

# What llama2.c's own C implementation measures on the default model (../shared/reference/README.md).
if [ "$CHECKPOINT" = "$DEFAULT_MODEL/stories3M-q80.bin" ] && [ "$TEXT" = ../shared/data/tinystories/eval.txt ]; then
  case "$WINDOWS" in
    16) echo "llama2.c reference, first 16 windows: mean NLL 1.724090, perplexity 5.6074" ;;
    64) echo "llama2.c reference, first 64 windows: mean NLL 2.372172, perplexity 10.7207" ;;
    all) echo "llama2.c reference, all 143 windows: mean NLL 2.463863, perplexity 11.7501" ;;
  esac
fi

[ "$COMPRESS" != none ] || exit 0
# Compress, then run the bundle with its fused kernels, measured against the float model in the same run.
mkdir -p "$OUT"
BUNDLE="$OUT/$(basename "$CHECKPOINT" .bin).usk"
read -r -a COMPRESS_ARGS <<<"$COMPRESS"
echo
ultrasketch compress "$CHECKPOINT" "${TOK_ARGS[@]}" "${COMPRESS_ARGS[@]}" -o "$BUNDLE"
echo
ultrasketch inspect "$BUNDLE"
echo
ultrasketch generate "$BUNDLE" --prompt "$PROMPT" --steps "$STEPS" --seed "$SEED"
echo
ultrasketch eval "$BUNDLE" --text "$TEXT" --windows "$WINDOWS" --reference "$CHECKPOINT"
