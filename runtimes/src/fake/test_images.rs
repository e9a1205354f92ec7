//! Images with the behaviour the conformance suite expects, as shell and perl scripts (perl
//! is in every Debian base image; it gives the fake a TCP server and client).

use super::{FakeImage, FakeRuntime};

/// Prints `hello 1`..`hello 3` to stdout and `warning 1` to stderr, exits 0.
pub const HELLO: &str = "fake/hello:latest";
/// Prints each argument on a line, then its environment as `KEY=VALUE` lines.
pub const ECHO: &str = "fake/echo:latest";
/// Exits with code 3.
pub const EXIT_3: &str = "fake/exit3:latest";
/// Sleeps forever; ends on `SIGTERM`.
pub const SLEEP: &str = "fake/sleep:latest";
/// Burns CPU forever and ignores `SIGTERM`.
pub const BUSY: &str = "fake/busy:latest";
/// Allocates memory without bound.
pub const MEMORY_HOG: &str = "fake/hog:latest";
/// Serves `HTTP/1.0 200 OK` on `127.0.0.1:$PORT`.
pub const LISTEN: &str = "fake/listen:latest";
/// Fetches `http://127.0.0.1:$PORT/` (retrying for ~5 s), prints the status line, exits 0;
/// exits 1 if it cannot connect.
pub const CONNECT: &str = "fake/connect:latest";

/// Add all the images above to `runtime`.
pub fn install(runtime: &FakeRuntime) {
    let perl = |script: &str| FakeImage {
        entrypoint: vec!["perl".into(), "-e".into(), script.into()],
    };
    runtime.add_image(
        HELLO,
        FakeImage::shell("echo 'hello 1'; echo 'warning 1' >&2; echo 'hello 2'; echo 'hello 3'"),
    );
    runtime.add_image(
        ECHO,
        FakeImage::shell(r#"for a in "$@"; do echo "$a"; done; env"#),
    );
    runtime.add_image(EXIT_3, FakeImage::shell("echo 'exiting with 3'; exit 3"));
    runtime.add_image(SLEEP, FakeImage::shell("exec sleep 1000000"));
    runtime.add_image(
        BUSY,
        perl(r#"$SIG{TERM} = "IGNORE"; my $i = 0; while (1) { $i++ }"#),
    );
    runtime.add_image(
        MEMORY_HOG,
        perl(
            r#"my @a; while (1) { push @a, "x" x 4_000_000; select(undef, undef, undef, 0.005) }"#,
        ),
    );
    runtime.add_image(
        LISTEN,
        perl(
            r#"use IO::Socket::INET; $| = 1;
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ENV{PORT},
                Listen => 16, ReuseAddr => 1) or die "listen: $!";
            print "listening on $ENV{PORT}\n";
            while (my $c = $s->accept) {
                while (my $l = <$c>) { last if $l =~ /^\r?\n$/ }
                print $c "HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"; close $c;
            }"#,
        ),
    );
    runtime.add_image(
        CONNECT,
        perl(
            r#"use IO::Socket::INET; $| = 1;
            for (1..50) {
                my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $ENV{PORT});
                if ($c) { print $c "GET / HTTP/1.0\r\n\r\n"; my $l = <$c>; $l =~ s/\r?\n$//;
                          print "$l\n"; exit 0 }
                select(undef, undef, undef, 0.1);
            }
            print STDERR "cannot connect to 127.0.0.1:$ENV{PORT}\n"; exit 1;"#,
        ),
    );
}
