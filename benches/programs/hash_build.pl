# hash_build.pl N: builds a hash of N keys holding small arrays (perl's
# scalars, hash entries and arrays all come from malloc: Debian's perl is
# built without its own allocator), reads it, deletes half of it and prints
# a checksum. About 400 bytes of heap a key: 600 MiB at the default N.
use strict;
use warnings;

my $n = shift // 1_500_000;
my %h;
for my $i (1 .. $n) {
    $h{"key$i"} = [$i, "v" x ($i % 50)];
}
my $sum = 0;
for my $k (keys %h) {
    $sum += $h{$k}[0] if $k =~ /7$/;
}
delete $h{"key$_"} for 1 .. int($n / 2);
print "$sum ", scalar(keys %h), "\n";
