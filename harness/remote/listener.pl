# The guest's end of a direct restore stream (harness/remote/commands.py, DIRECT_LISTENER).
# perl-base only: on every Debian system, the rescue image's too. Run as the first stage of
# `perl -e ... | tar -x ...`; its stdin is the SSH session, its stderr what the host reads.
use strict; use warnings; use IO::Socket::INET; $| = 1;

# The drill's one-time token comes over the SSH session, never on a command line.
my $token = <STDIN>; defined $token or die qq(no token\n); chomp $token;

# One listener on a port the kernel picks; the host reads which from stderr.
my $l = IO::Socket::INET->new(Listen => 1, LocalPort => 0, Proto => q(tcp))
  or die qq(cannot listen: $!\n);
print STDERR q(rdrill-port ), $l->sockport, qq(\n);

# One connection only, whose first bytes must be the token, within 30 s.
local $SIG{ALRM} = sub { die qq(no connection with the token within 30s\n) }; alarm 30;
my $c = $l->accept or die qq(accept: $!\n); close $l; my $got = q();
while (length $got < length $token) {
  sysread($c, $got, length($token) - length($got), length $got)
    or die qq(the connection ended before the token\n) }
alarm 0; $got eq $token or die qq(a connection without the drill's token: refused\n);

# Every byte to stdout (tar -x). When tar stops reading (it found the end-of-archive
# blocks), read on to the end and count what came after and how much of it was not zero:
# a writer's padding is no lost data, anything else is.
binmode STDOUT; $SIG{PIPE} = q(IGNORE); my ($n, $buf, $after, $dirty) = (0, q(), -1, 0);
while (1) { my $r = sysread($c, $buf, 262144); defined $r or die qq(read: $!\n);
  last unless $r; $n += $r; my $o = 0;
  while ($after < 0 && $o < $r) { my $w = syswrite(STDOUT, $buf, $r - $o, $o);
    if (!defined $w) { $!{EPIPE} or die qq(write: $!\n); $after = 0; last } $o += $w }
  if ($after >= 0) { my $rest = substr($buf, $o); $after += length $rest;
    $dirty += ($rest =~ tr/\0//c) } }
print STDERR qq(rdrill-received $n\n);
print STDERR qq(rdrill-after-tar $after $dirty\n) if $after >= 0;
