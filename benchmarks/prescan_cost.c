// The cost of the pipelined first pass's pre-scan (benchmarks/RESULTS.md, issue 17): a LIBSVM file's lines, and with a
// second argument also the distinct label tokens (each line's first token), over an mmap of the file.
//   gcc -O2 -o /tmp/prescan benchmarks/prescan_cost.c && /tmp/prescan clicks.svm && /tmp/prescan clicks.svm labels
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int fd=open(argv[1],O_RDONLY); struct stat st; fstat(fd,&st);
  const char*p=mmap(0,st.st_size,PROT_READ,MAP_PRIVATE,fd,0); const char*end=p+st.st_size;
  int labels=argc>2;
  double t0=now(); long lines=0; char seen[16][32]; int nseen=0;
  const char*q=p;
  while(q<end){
    if(labels){ const char*s=q; while(q<end&&*q!=' '&&*q!='\n')q++; int n=q-s; if(n>31)n=31; int f=0;
      for(int i=0;i<nseen;i++) if(!strncmp(seen[i],s,n)&&seen[i][n]==0){f=1;break;}
      if(!f&&nseen<16){memcpy(seen[nseen],s,n);seen[nseen][n]=0;nseen++;} }
    const char*nl=memchr(q,'\n',end-q); lines++; if(!nl)break; q=nl+1;
  }
  printf("%s: %ld lines%s%d distinct labels, %.3f s\n",labels?"lines+labels":"lines",lines,labels?", ":" ",labels?nseen:0,now()-t0);
}
