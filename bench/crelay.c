// bench/crelay.c - the plain C relay bench/run.sh measures vethd against:
// a TAP and a packet socket on the parent, one blocking thread per
// direction, one read/send per frame, vnet headers on both sides, nothing
// else. Usage: crelay TAPNAME PARENT (prints "ready" once both are open).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#define BUF (512 * 1024 + 1024)
#define die(what) do { perror(what); return 1; } while (0)
static int tap, sock;
static void *up(void *arg) { // TAP -> parent
	static char b[BUF];
	for (ssize_t n;;) if ((n = read(tap, b, BUF)) > 0) send(sock, b, n, 0);
	return arg;
}
int main(int argc, char **argv) {
	struct ifreq ifr = {0};
	if (argc != 3) { fprintf(stderr, "usage: crelay TAP PARENT\n"); return 2; }
	if ((tap = open("/dev/net/tun", O_RDWR)) < 0) die("open /dev/net/tun");
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", argv[1]);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(tap, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
	if (ioctl(tap, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) die("TUNSETOFFLOAD");
	if (ioctl(tap, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR"); // works on a TAP fd
	unsigned char *m = (unsigned char *)ifr.ifr_hwaddr.sa_data;
	if ((sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL))) < 0) die("socket");
	int one = 1, idx = if_nametoindex(argv[2]);
	if (!idx) die(argv[2]);
	if (setsockopt(sock, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) die("PACKET_VNET_HDR");
	int buf = 4 << 20; // as vethd's: 64 KB GSO frames overflow the default in a burst
	setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
	setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
	if (setsockopt(sock, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) die("PACKET_IGNORE_OUTGOING");
	// accept a frame to the TAP's MAC, broadcast or multicast (I/G bit); drop the rest
	struct sock_filter f[] = {
		{BPF_LD | BPF_B | BPF_ABS, 0, 0, 0},
		{BPF_JMP | BPF_JSET | BPF_K, 4, 0, 1},
		{BPF_LD | BPF_W | BPF_ABS, 0, 0, 0},
		{BPF_JMP | BPF_JEQ | BPF_K, 0, 3, (unsigned)m[0] << 24 | m[1] << 16 | m[2] << 8 | m[3]},
		{BPF_LD | BPF_H | BPF_ABS, 0, 0, 4},
		{BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (unsigned)m[4] << 8 | m[5]},
		{BPF_RET | BPF_K, 0, 0, 0xffffffff},
		{BPF_RET | BPF_K, 0, 0, 0},
	};
	struct sock_fprog prog = {sizeof f / sizeof f[0], f};
	if (setsockopt(sock, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) die("SO_ATTACH_FILTER");
	struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = idx};
	if (bind(sock, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
	struct packet_mreq mr = {.mr_ifindex = idx, .mr_type = PACKET_MR_PROMISC};
	if (setsockopt(sock, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) die("PACKET_MR_PROMISC");
	pthread_t t;
	if (pthread_create(&t, NULL, up, NULL)) die("pthread_create");
	printf("ready %02x:%02x:%02x:%02x:%02x:%02x\n", m[0], m[1], m[2], m[3], m[4], m[5]);
	fflush(stdout);
	static char b[BUF]; // parent -> TAP
	for (ssize_t n;;) if ((n = recv(sock, b, BUF, 0)) > 0) write(tap, b, n);
}
