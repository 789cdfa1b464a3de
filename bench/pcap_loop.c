/* The floor for bench/capture.sh: a plain libpcap read loop over capture files, counting packets
 * and captured bytes, nothing else.  cc -O2 -o pcap_loop bench/pcap_loop.c -lpcap
 * Usage: pcap_loop FILE...   prints "packets=N bytes=N" on stdout. */
#include <pcap/pcap.h>
#include <stdio.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    unsigned long long packets = 0, bytes = 0;
    for (int i = 1; i < argc; i++) {
        pcap_t *p = pcap_open_offline(argv[i], err);
        if (!p) { fprintf(stderr, "pcap_loop: %s\n", err); return 1; }
        struct pcap_pkthdr *h;
        const unsigned char *data;
        int rc;
        while ((rc = pcap_next_ex(p, &h, &data)) == 1) { packets++; bytes += h->caplen; }
        if (rc == PCAP_ERROR) { fprintf(stderr, "pcap_loop: %s: %s\n", argv[i], pcap_geterr(p)); return 1; }
        pcap_close(p);
    }
    printf("packets=%llu bytes=%llu\n", packets, bytes);
    return argc > 1 ? 0 : 2;
}
