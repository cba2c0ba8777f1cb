#!/usr/bin/env bash
# The installed package, used the two documented ways. Installs the build tree to a temporary
# prefix and moves it (the CMake package and the .pc must find the tree where it lies), builds
# every examples/*.cpp once with find_package(virtiofs) and once with
# `c++ -std=c++20 app.cpp $(pkg-config --cflags --libs virtiofs)`, checks that both link
# libvirtiofs.so.1 from that prefix (a static build: that neither does), and runs each against a
# real virtiofsd, checking what it read or wrote against the host directory (the convention is
# in examples/CMakeLists.txt).
#   run.sh BUILD_DIR SOURCE_DIR VIRTIOFSD CXX_COMPILER CMAKE
set -euo pipefail
build=$1 source=$2 virtiofsd=$3 cxx=$4 cmake=$5

work=$(mktemp -d "${TMPDIR:-/tmp}/virtiofs-install.XXXXXX")
daemon= client=
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  [ -n "$client" ] && kill "$client" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install test: $*" >&2; exit 1; }
# Runs a step quietly; on failure shows its output.
quiet() {
  "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log"; fail "failed: $*"; }
}

quiet "$cmake" --install "$build" --prefix "$work/staged"
mv "$work/staged" "$work/prefix"
prefix=$work/prefix
pc=$(find "$prefix" -name virtiofs.pc)
[ -n "$pc" ] || fail "no virtiofs.pc installed"
libdir=$(dirname "$(dirname "$pc")")
shared=0
[ -e "$libdir/libvirtiofs.so.1" ] && shared=1
[ $shared = 1 ] || [ -e "$libdir/libvirtiofs.a" ] || fail "no libvirtiofs in $libdir"
[ -e "$prefix/share/man/man1/virtiofs.1" ] && [ -e "$prefix/share/man/man1/virtiofs-mount.1" ] ||
  fail "man pages not installed"

examples=()
for src in "$source"/examples/*.cpp; do examples+=("$(basename "$src" .cpp)"); done

# find_package(virtiofs), target virtiofs::virtiofs.
quiet "$cmake" -S "$source/examples" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release
quiet "$cmake" --build "$work/cmake" -j 2

# pkg-config: the standard is the application's choice, not in Cflags.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags virtiofs) libs=$(pkg-config --libs virtiofs)
[[ "$cflags" != *-std=* ]] || fail "pkg-config Cflags force a standard: $cflags"
mkdir "$work/pkgconfig"
for name in "${examples[@]}"; do
  # shellcheck disable=SC2086  # the flags are words
  quiet "$cxx" -std=c++20 -O2 -o "$work/pkgconfig/$name" "$source/examples/$name.cpp" $cflags $libs
done
# Without C++20 the header says so, in one line.
# shellcheck disable=SC2086
if "$cxx" -std=c++17 -fsyntax-only "$source/examples/read_file.cpp" $cflags >"$work/cxx17.log" 2>&1 ||
   ! grep -q "libvirtiofs needs C++20: compile with -std=c++20" "$work/cxx17.log"; then
  cat "$work/cxx17.log"; fail "a C++17 build does not say that C++20 is needed"
fi

# Which libvirtiofs a binary loads: the CMake build carries a RUNPATH to the prefix, the
# pkg-config one is run with LD_LIBRARY_PATH (as with any library outside the linker's path).
check_linked() {
  local binary=$1
  if [ $shared = 1 ]; then
    # (Whole outputs into grep: with pipefail, grep -q ending a pipe early would fail it.)
    grep -q 'NEEDED.*\[libvirtiofs\.so\.1\]' <<<"$(readelf -d "$binary")" ||
      fail "$binary does not link libvirtiofs.so.1"
    local loaded
    loaded=$("${run[@]}" ldd "$binary")
    grep -q "libvirtiofs\.so\.1 => $libdir/" <<<"$loaded" ||
      fail "$binary does not load libvirtiofs.so.1 from $libdir: $loaded"
  elif grep -q 'NEEDED.*libvirtiofs' <<<"$(readelf -d "$binary")"; then
    fail "$binary links a shared libvirtiofs, but the build installs the static one"
  fi
}

share=$work/share
mkdir -p "$share/notes"
# Over 2 MiB, so that readers loop over several max_read (1 MiB) pieces; in a subdirectory, so
# that path walks take more than one step.
file=notes/hello.txt
{ printf 'read through libvirtiofs, %s\n' "$(date +%s%N)"; seq 400000; } > "$share/$file"

# A virtiofsd for one run (it serves one connection, then exits); waits until it listens.
start_virtiofsd() {
  sock=$work/vfsd.$1.sock
  "$virtiofsd" --socket-path="$sock" -o source="$share" -o sandbox=chroot -o cache=auto \
    >"$work/virtiofsd.$1.log" 2>&1 3>&- &  # not holding the reconnect example's stdin open
  daemon=$!
  for _ in $(seq 100); do
    awk -v s="$sock" '$4 == "00010000" && $8 == s {found=1} END {exit !found}' /proc/net/unix &&
      return 0
    kill -0 "$daemon" 2>/dev/null || { cat "$work/virtiofsd.$1.log"; fail "virtiofsd exited at start"; }
    sleep 0.1
  done
  fail "virtiofsd did not listen on $sock within 10 s"
}
stop_virtiofsd() {
  for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  daemon=
}

for how in cmake pkgconfig; do
  run=(env)
  [ $how = pkgconfig ] && run=(env LD_LIBRARY_PATH="$libdir")
  for name in "${examples[@]}"; do
    binary=$work/$how/$name
    [ -x "$binary" ] || fail "$how build made no $name (is it listed in examples/CMakeLists.txt?)"
    check_linked "$binary"
    start_virtiofsd "$how-$name"
    case $name in
      write_*)
        expected="written by $name, built with $how"
        echo "$expected" | "${run[@]}" timeout 30 "$binary" "$sock" "$how-$name.txt" ||
          fail "$how/$name failed"
        [ "$(cat "$share/$how-$name.txt" 2>/dev/null)" = "$expected" ] ||
          fail "$how/$name: the host directory does not hold what it wrote"
        ;;
      reconnect)
        # One line: it prints the file. Then its virtiofsd is killed and a new one listens on
        # the same socket; the next line must be served through a new client.
        rm -f "$work/requests"; mkfifo "$work/requests"
        "${run[@]}" timeout 60 "$binary" "$sock" "$file" <"$work/requests" >"$work/out" \
          2>"$work/err" &
        client=$!
        exec 3>"$work/requests"
        echo >&3
        size=$(stat -c %s "$share/$file")
        for _ in $(seq 100); do
          [ "$(stat -c %s "$work/out")" -ge "$size" ] && break
          kill -0 $client 2>/dev/null || break
          sleep 0.1
        done
        kill "$daemon"; wait "$daemon" 2>/dev/null || true
        start_virtiofsd "$how-$name"
        echo >&3
        exec 3>&-
        wait $client || { cat "$work/err"; fail "$how/$name failed"; }
        client=
        grep -q "connecting again" "$work/err" || { cat "$work/err"; fail "$how/$name did not reconnect"; }
        cmp -s "$work/out" <(cat "$share/$file" "$share/$file") ||
          fail "$how/$name did not print the host file once before and once after the new backend"
        ;;
      *)
        "${run[@]}" timeout 30 "$binary" "$sock" "$file" >"$work/out" ||
          fail "$how/$name failed"
        cmp -s "$work/out" "$share/$file" || fail "$how/$name printed something else than the host file"
        ;;
    esac
    stop_virtiofsd
    echo "$how/$name: ok"
  done
done
