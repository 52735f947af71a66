<?xml version="1.0"?>
<!-- k8s-ha: applied by pulumi-libvirt to every domain it defines, before it is defined.
     * Headless: remove the SPICE display pulumi-libvirt adds when none is asked for. Cluster nodes
       use the serial console; the default display costs a listening port on the hypervisor per VM,
       and two daemons on one host collide on 127.0.0.1:5900 (found on the guests tier).
     * For domains without hardware virtualisation (type='qemu', TCG): cap QEMU's translation block
       cache, which otherwise costs hundreds of MiB per guest on top of its memory. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/devices/graphics"/>
  <xsl:template match="/domain[@type='qemu']/features">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
      <tcg>
        <tb-cache unit="MiB">128</tb-cache>
      </tcg>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
