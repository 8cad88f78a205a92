# Hash-heavy Perl: build, update, delete and walk big hashes of arrays.
use strict; use warnings; use Digest::MD5 qw(md5_hex);
my %h;
for my $i (0 .. 150000) { $h{"key$i"} = [$i, "v" x ($i % 40), { n => $i % 13 }]; }
for my $i (0 .. 150000) { delete $h{"key$i"} if $i % 4 == 0; }
my %count;
$count{ $h{$_}[2]{n} }++ for keys %h;
my $ctx = Digest::MD5->new;
for my $k (sort keys %h) { $ctx->add($k, $h{$k}[0], $h{$k}[1]); }
my @s = map { join(",", $_ .. $_ + ($_ % 17)) } 0 .. 40000;
my $joined = join("|", @s);
my %words; $words{$_}++ for split /[,|]/, $joined;
print scalar(keys %h), " ", join(" ", map { "$_=$count{$_}" } sort { $a <=> $b } keys %count), "\n";
print $ctx->hexdigest, " ", length($joined), " ", scalar(keys %words), " ", md5_hex($joined), "\n";
