# The proxy benchmarks' zone and query file (sourced by bench/proxy.sh and bench/proxy-ab.sh).
# make_zone NAMES ZONE: the zone text: NAMES hosts h0..hN-1 with an A each (192.0.2.0/24,
# 198.51.100.0/24), an AAAA for two in three, an MX for one in four, a TXT for one in five, plus
# the NS and MX targets.
make_zone() {
    awk -v n="$1" -v z="$2" 'BEGIN {
        print "$ORIGIN " z; print "$TTL 300"
        print "@ IN SOA ns1 hostmaster 1 3600 900 604800 300"
        print "@ IN NS ns1"; print "@ IN NS ns2"
        print "ns1 IN A 192.0.2.53"; print "ns2 IN A 198.51.100.53"
        print "@ IN MX 10 mail"; print "mail IN A 192.0.2.25"; print "mail IN AAAA 2001:db8:25::25"
        for (i = 0; i < n; i++) {
            h = "h" i
            printf "%s IN A %s%d\n", h, (i % 2 ? "192.0.2." : "198.51.100."), i % 254 + 1
            if (i % 3 != 0) printf "%s IN AAAA 2001:db8:%x::%x\n", h, int(i / 256), i % 65536
            if (i % 4 == 0) printf "%s IN MX %d mx%d\n", h, 10 * (i % 3 + 1), i % 7
            if (i % 5 == 0) printf "%s IN TXT \"v=spf1 ip4:192.0.2.%d -all\" \"host %d\"\n", h, i % 254 + 1, i
        }
        for (j = 0; j < 7; j++) printf "mx%d IN A 192.0.2.%d\nmx%d IN AAAA 2001:db8:25::%d\n", j, 100 + j, j, j
    }'
}
# make_queries NAMES ZONE: dnsperf's query file: every (name, type) that exists, an AAAA for some
# that have none (NODATA) and 5 % non-existent names (NXDOMAIN), shuffled with a fixed seed.
make_queries() {
    awk -v n="$1" -v z="${2%.}" 'BEGIN {
        for (i = 0; i < n; i++) {
            h = "h" i "." z
            print h " A"
            if (i % 3 != 0 || i % 2) print h " AAAA"    # i % 3 == 0 and odd: NODATA
            if (i % 4 == 0) print h " MX"
            if (i % 5 == 0) print h " TXT"
            if (i % 20 == 0) print "nx" i "." z " A"     # NXDOMAIN
        }
    }' | awk 'BEGIN { srand(11) } { printf "%.8f\t%s\n", rand(), $0 }' | sort -k1,1 | cut -f2
}
