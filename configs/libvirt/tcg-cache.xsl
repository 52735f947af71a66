<?xml version="1.0"?>
<!-- k8s-ha: for domains without hardware virtualisation (type='qemu', TCG) cap QEMU's translation
     block cache, which otherwise costs hundreds of MiB per guest on top of its memory. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/features">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
      <tcg>
        <tb-cache unit="MiB">128</tb-cache>
      </tcg>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
