// bench/udpping.c - UDP ping-pong for bench/run.sh's latency figures.
//   udpping -s ADDR PORT                          echo every datagram back
//   udpping -c ADDR PORT COUNT INTERVAL_US SECS   COUNT round trips (or SECS)
// The client sends the next datagram as soon as the reply is in
// (INTERVAL_US 0: back to back, which ping -f does not quite do, and ping
// prints no per-packet times with -f) or INTERVAL_US after the previous one,
// and prints "n= lost= min= p50= p99= max= avg=" in microseconds.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}
int main(int argc, char **argv) {
	if (argc < 4 || (argv[1][1] == 'c' && argc != 7)) {
		fprintf(stderr, "usage: udpping -s ADDR PORT | -c ADDR PORT COUNT INTERVAL_US SECS\n");
		return 2;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
	if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	char b[64];
	if (argv[1][1] == 's') {
		if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
		for (;;) {
			struct sockaddr_in p;
			socklen_t l = sizeof p;
			ssize_t n = recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&p, &l);
			if (n > 0) sendto(s, b, n, 0, (struct sockaddr *)&p, l);
		}
	}
	long count = atol(argv[4]), iv = atol(argv[5]), got = 0, lost = 0;
	double end = now() + atof(argv[6]) * 1e6, *rtt = calloc(count, sizeof *rtt), sum = 0;
	struct timeval to = {.tv_sec = 1};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &to, sizeof to);
	if (!rtt || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
	for (long seq = 0; seq < count && now() < end; seq++) {
		double t0 = now();
		long r = -1;
		send(s, &seq, sizeof seq, 0);
		while (recv(s, &r, sizeof r, 0) == sizeof r && r != seq) {} // drop late replies
		if (r != seq) { lost++; continue; }
		sum += rtt[got++] = now() - t0;
		if (iv > 0) usleep(iv);
	}
	if (!got) { printf("n=0 lost=%ld\n", lost); return 1; }
	qsort(rtt, got, sizeof *rtt, cmp);
	printf("n=%ld lost=%ld min=%.1f p50=%.1f p99=%.1f max=%.1f avg=%.1f\n", got, lost, rtt[0],
	       rtt[got / 2], rtt[(long)(got * 0.99)], rtt[got - 1], sum / got);
	return 0;
}
